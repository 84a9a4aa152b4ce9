//! ACL check micro-benchmark: the cost of one read check per delivery for
//! a restricted client (the check fan-out makes per recipient), against
//! the size of the file. Prints a table; `cargo bench --bench acl`.

use std::fmt::Write;
use std::hint::black_box;
use std::time::{Duration, Instant};

use shardmq::security::{Access, AclRules, Client};

/// An acl_file with `users` sections of `per_user` rules each (the last
/// rule of each grants what the benchmark reads) and three patterns.
fn acl(users: usize, per_user: usize) -> AclRules {
    let mut text = String::from("pattern readwrite devices/%c/#\npattern read users/%u/#\n");
    text.push_str("pattern deny devices/%c/secret\n");
    for u in 0..users {
        let _ = writeln!(text, "user u{u}");
        for r in 0..per_user {
            let _ = writeln!(text, "topic read fleet/site{r}/+/m{r}");
        }
        let _ = writeln!(text, "topic deny fleet/blocked/#");
    }
    AclRules::parse(&text, "bench.acl").expect("valid")
}

fn bench(name: &str, rules: &AclRules, client: Client<'_>, topics: &[String]) {
    let budget = Duration::from_millis(300);
    let start = Instant::now();
    let (mut ops, mut allowed) = (0u64, 0u64);
    while start.elapsed() < budget {
        for t in topics {
            allowed += u64::from(rules.allows(black_box(client), black_box(t), Access::Read));
        }
        ops += topics.len() as u64;
    }
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    println!(
        "{name:<44} {ns:>8.1} ns/check  ({:.0}% allowed)",
        100.0 * allowed as f64 / ops as f64
    );
}

fn main() {
    let topics: Vec<String> = (0..1024)
        .map(|i| format!("fleet/site{}/dev{i}/m{}", i % 10, i % 10))
        .collect();
    for (users, per_user) in [(1, 10), (1000, 10), (100, 100)] {
        let rules = acl(users, per_user);
        // A user in the middle of the file; the patterns come after its section.
        let name = format!("u{}", users / 2);
        let pattern_topics: Vec<String> = (0..1024)
            .map(|i| format!("users/{name}/inbox/{i}"))
            .collect();
        let client = Client {
            id: "dev-42",
            username: Some(&name),
        };
        bench(
            &format!("section:  users={users:>5} rules/user={per_user:>3}"),
            &rules,
            client,
            &topics,
        );
        bench(
            &format!("patterns: users={users:>5} rules/user={per_user:>3}"),
            &rules,
            client,
            &pattern_topics,
        );
    }
}
