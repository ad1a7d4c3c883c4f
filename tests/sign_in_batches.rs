//! Sign-in reads that arrive together share one query on PostgreSQL (`storage::sign_ins`): every
//! caller must still get exactly its own app, user and licences, whatever the username holds, and
//! a wrong secret or an unknown user in the same batch must not disturb the others.

mod common;

use common::{Backend, gateway::*};
use futures_util::future::join_all;

on_both_backends! {
    concurrent_sign_ins_each_get_their_own_answer => concurrent_sign_ins;
}

/// Names an array literal would misread if they were not quoted and escaped.
const NAMES: [&str; 10] = [
    "plain-user",
    "with,comma",
    "{braced}",
    "say \"hi\"",
    "back\\slash",
    "NULL",
    " spaced ",
    "ünïcødé 名前",
    "quote\"\\mix,{}",
    "semi;colon'--",
];

async fn concurrent_sign_ins(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-batches").await;
    for (i, name) in NAMES.iter().enumerate() {
        stack.register_ok(&fx, name, &format!("hwid=HW-{i}")).await;
    }
    for round in 0..3 {
        let mut bodies = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            bodies.push(user_form(&fx, name, &format!("hwid=HW-{i}")));
            bodies.push(format!(
                "username=plain-user&password=plain-user-pw&hwid=HW-0&app_secret=not-{i}-{round}"
            ));
            bodies.push(user_form(&fx, &format!("nobody-{i}"), "hwid=HW-X"));
        }
        // All at once, so they meet in the reader's queue.
        let replies = join_all(bodies.into_iter().map(|body| stack.client("login", body))).await;
        for (i, chunk) in replies.chunks(3).enumerate() {
            let body = expect_ok(&chunk[0]);
            assert_eq!(body["name"], NAMES[i], "round {round}: {body}");
            assert_eq!(body["hwid"], format!("HW-{i}"), "round {round}: {body}");
            expect_error(&chunk[1], 401, "invalid_app_secret");
            expect_signed_error(&chunk[2], 401, "invalid_credentials", &fx, "login", "");
        }
    }
    stack.stop().await;
}
