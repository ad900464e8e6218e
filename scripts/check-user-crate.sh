#!/usr/bin/env bash
# Compiles every Rust block of README.md in a new crate whose only dependency is
# `fib-rpc = { path = ..., default-features = false }`, as a user's crate would.
#
# The crate's own doc tests compile the same blocks, but with the crate's dependencies in
# scope, so a block naming `num_bigint` (or any other dependency of ours) passes there and
# fails for a user. This catches that. Blocks are built, not run (most need a broker).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/examples"
cat >"$WORK/Cargo.toml" <<EOF
[package]
name = "fib-rpc-user-crate-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
fib-rpc = { path = "$ROOT", default-features = false }
EOF
mkdir -p "$WORK/src"
echo "fn main() {}" >"$WORK/src/main.rs"
# The same dependency versions as the project's own build.
cp "$ROOT/Cargo.lock" "$WORK/Cargo.lock"

# Each ```rust block becomes an example. Lines hidden from readers with `# ` are kept, as
# rustdoc keeps them; a block without `fn main` is wrapped the way rustdoc wraps it.
python3 - "$ROOT/README.md" "$WORK/examples" <<'EOF'
import re, sys
readme, out = sys.argv[1], sys.argv[2]
blocks = re.findall(r"^```rust[^\n]*\n(.*?)^```", open(readme).read(), re.S | re.M)
if not blocks:
    sys.exit("no Rust blocks found in README.md")
for index, block in enumerate(blocks, 1):
    lines = []
    for line in block.splitlines():
        stripped = line.lstrip()
        if stripped == "#":
            line = ""
        elif stripped.startswith("# "):
            line = line.replace("# ", "", 1)
        lines.append(line)
    code = "\n".join(lines)
    if not re.search(r"\bfn main\b", code):
        uses = [l for l in lines if l.startswith("use ")]
        body = "\n".join(l for l in lines if not l.startswith("use "))
        code = "\n".join(uses) + (
            "\n\n#[allow(unreachable_code)]\nfn main() {\n"
            "    let run = || {\n" + body + "\n    };\n"
            "    let _ = run();\n}\n"
        )
    open(f"{out}/readme_{index}.rs", "w").write(code)
print(f"README.md: {len(blocks)} Rust blocks")
EOF

# Shares the project's target directory, so the dependencies are not built again.
cd "$WORK"
CARGO_TARGET_DIR="$ROOT/target" cargo build --quiet --examples
echo "README.md: every Rust block compiles in a crate that depends only on fib-rpc"
