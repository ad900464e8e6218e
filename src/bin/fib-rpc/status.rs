//! `fib-rpc status`: whether the server queue exists and how many servers consume it, in one
//! line and in the exit code.

use fib_rpc::{ClientOptions, Error, NoServerReason, QueueStatus, ReplyTo, RpcClient};

use crate::args::{Global, StatusArgs};
use crate::exit::{Class, Failure};

pub fn run(global: &Global, args: StatusArgs) -> Result<(), Failure> {
    // Direct reply-to: nothing to declare, since no call is made.
    let options = ClientOptions::default()
        .queue(global.queue.as_str())
        .heartbeat(global.heartbeat)
        .reply_to(ReplyTo::Direct)
        .connection_name(format!("fib-rpc status (pid {})", std::process::id()));
    let client = RpcClient::connect_failover(&global.urls, options)?;
    let status = match client.queue_status(args.timeout) {
        Ok(status) => Some(status),
        Err(Error::NoServer {
            reason: NoServerReason::NoQueue,
            ..
        }) => None,
        Err(err) => return Err(err.into()),
    };
    client.close();
    let line = if args.json {
        json(&global.queue, status)
    } else {
        human(&global.queue, status)
    };
    {
        use std::io::Write;
        writeln!(std::io::stdout().lock(), "{line}")?;
    }
    match status {
        Some(status) if status.consumers > 0 => Ok(()),
        // The line on stdout says why; stderr stays quiet.
        Some(_) => Err(Failure::new(Class::NoConsumer, "")),
        None => Err(Failure::new(Class::NoServer, "")),
    }
}

fn human(queue: &str, status: Option<QueueStatus>) -> String {
    let Some(status) = status else {
        return format!("queue {queue:?}: no such queue");
    };
    // A consumer is one server: a `fib-rpc serve`'s workers share one consumer.
    let servers = match status.consumers {
        0 => "no consumer (no server running)".to_owned(),
        1 => "1 consumer".to_owned(),
        n => format!("{n} consumers"),
    };
    let waiting = match status.messages {
        1 => "1 request waiting".to_owned(),
        n => format!("{n} requests waiting"),
    };
    format!("queue {queue:?}: exists, {servers}, {waiting}")
}

fn json(queue: &str, status: Option<QueueStatus>) -> String {
    let (consumers, messages) = status.map_or((0, 0), |s| (s.consumers, s.messages));
    format!(
        "{{\"queue\":\"{}\",\"exists\":{},\"consumers\":{consumers},\"messages\":{messages}}}",
        json_escape(queue),
        status.is_some()
    )
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(human("q", None), "queue \"q\": no such queue");
        assert_eq!(
            json("a\"b", None),
            r#"{"queue":"a\"b","exists":false,"consumers":0,"messages":0}"#
        );
    }
}
