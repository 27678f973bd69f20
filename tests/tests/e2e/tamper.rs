//! Tampering behind the write path, through `Store::connection` as an intruder with database
//! access would: removing the chain's last events, cutting the chain together with its
//! stored head, forging ledger entries and editing or removing their audit events. Each is
//! reported by `VerifyAuditChain` or `VerifyLedger`; checkpoints reach the change feed and
//! verify with the published key, checked here with ed25519-dalek, as an outside system would.
//! And the upgrade to migration m0007, which takes each chain's head from its events.

use ed25519_dalek::{Signature, VerifyingKey};
use relief_domain::audit::{EventFields, GENESIS_HASH, chain_hash};
use relief_migrations::{Migrator, MigratorTrait as _};
use relief_proto::v1 as pb;
use relief_proto::v1::audit_service_client::AuditServiceClient;
use relief_proto::v1::ledger_service_client::LedgerServiceClient;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_store::{DbSettings, Store};
use relief_tests::{
    Backend, Role, SpawnOptions, TestApp, WANGCHENG, backend_tests, expect_violations, spawn_app,
    spawn_app_with, valid_application, with_bearer,
};
use relief_tests::{
    TEST_ED25519_PEM, TEST_ED25519_PUB_PEM, create_pg_database, district_id, drop_pg_database,
    postgres_url,
};
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::Value;

use crate::approvals::channel;

backend_tests!(
    removing_the_last_events_is_detected_and_their_seq_is_never_reused,
    a_callers_checkpoint_holds_the_chain_to_what_it_was,
    checkpoints_are_published_on_the_feed_and_verify_with_the_published_key,
    ledger_entries_without_a_case_or_of_an_unknown_case_are_reported,
    a_ledger_entry_whose_audit_event_was_edited_or_removed_is_reported,
    the_upgrade_takes_the_chain_head_from_the_events,
    a_configured_key_signs_the_checkpoints,
    an_idle_districts_last_events_get_their_checkpoint,
);

async fn exec(app: &TestApp, sql: &str) {
    app.store
        .connection()
        .execute_unprepared(sql)
        .await
        .unwrap();
}

async fn verify(
    app: &TestApp,
    checkpoint: Option<pb::ChainCheckpoint>,
) -> pb::VerifyAuditChainResponse {
    verify_raw(app, checkpoint).await.unwrap()
}

async fn verify_raw(
    app: &TestApp,
    checkpoint: Option<pb::ChainCheckpoint>,
) -> Result<pb::VerifyAuditChainResponse, tonic::Status> {
    let token = app.token(WANGCHENG, &[Role::Auditor], None, "auditor");
    let req = pb::VerifyAuditChainRequest {
        district_id: WANGCHENG.to_owned(),
        checkpoint,
        ..Default::default()
    };
    AuditServiceClient::new(channel(app).await)
        .verify_audit_chain(with_bearer(req, &token))
        .await
        .map(tonic::Response::into_inner)
}

async fn verify_ledger(app: &TestApp) -> pb::VerifyLedgerResponse {
    let token = app.token(WANGCHENG, &[Role::Auditor], None, "auditor");
    LedgerServiceClient::new(channel(app).await)
        .verify_ledger(with_bearer(
            pb::VerifyLedgerRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
}

fn point(seq: i64, hash: &str) -> Option<pb::ChainCheckpoint> {
    Some(pb::ChainCheckpoint {
        seq,
        hash: hash.to_owned(),
        ..Default::default()
    })
}

async fn removing_the_last_events_is_detected_and_their_seq_is_never_reused(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    applicant.submitted(valid_application()).await;
    let ok = verify(&app, None).await;
    assert!(ok.intact, "{ok:?}");
    let head = ok.head_seq;
    assert_eq!(head, app.events(WANGCHENG, None).await.len() as i64);
    assert_eq!(
        ok.head_hash,
        app.events(WANGCHENG, None).await.last().unwrap().hash
    );
    // The intruder removes the last two events.
    exec(
        &app,
        &format!(
            "DELETE FROM events WHERE district_id = '{WANGCHENG}' AND seq > {}",
            head - 2
        ),
    )
    .await;
    let cut = verify(&app, None).await;
    assert!(!cut.intact, "{cut:?}");
    assert_eq!(cut.first_broken_seq, head - 1);
    assert_eq!(cut.events_checked, head - 2);
    assert_eq!(
        cut.reason,
        "the chain ends before its stored head: events are missing"
    );
    // The next write continues after the stored head, not after what is left.
    let next = applicant.draft(valid_application()).await;
    let seqs: Vec<i64> = app
        .events(WANGCHENG, Some(&next.case_id))
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![head + 1]);
    // The hole stays a hole: the event after it does not follow on.
    let still = verify(&app, None).await;
    assert!(!still.intact);
    assert_eq!(still.first_broken_seq, head + 1);
    assert_eq!(still.reason, "sequence gap: an event is missing");
    assert_eq!(still.head_seq, head + 1);
}

async fn a_callers_checkpoint_holds_the_chain_to_what_it_was(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    applicant.submitted(valid_application()).await;
    let events = app.events(WANGCHENG, None).await;
    let last = events.last().unwrap().clone();
    let earlier = events[events.len() - 3].clone();
    // A point the chain passes through.
    let kept = verify(&app, point(earlier.seq, &earlier.hash)).await;
    assert!(kept.intact, "{kept:?}");
    // A point it does not pass through.
    let wrong = verify(&app, point(earlier.seq, &last.hash)).await;
    assert!(!wrong.intact);
    assert_eq!(wrong.first_broken_seq, earlier.seq);
    assert_eq!(wrong.reason, "does not match the caller's checkpoint");
    // The intruder cuts the last events and moves the stored head back to match: only a
    // point kept outside tells.
    exec(
        &app,
        &format!(
            "DELETE FROM events WHERE district_id = '{WANGCHENG}' AND seq > {}",
            earlier.seq
        ),
    )
    .await;
    exec(
        &app,
        &format!(
            "UPDATE districts SET chain_head_seq = {}, chain_head_hash = '{}' WHERE id = '{WANGCHENG}'",
            earlier.seq, earlier.hash
        ),
    )
    .await;
    assert!(verify(&app, None).await.intact);
    let cut = verify(&app, point(last.seq, &last.hash)).await;
    assert!(!cut.intact);
    assert_eq!(cut.first_broken_seq, earlier.seq + 1);
    assert_eq!(
        cut.reason,
        "the chain ends before the caller's checkpoint: events are missing"
    );
    // Malformed points are refused, naming the field.
    for (bad, field) in [
        (point(0, &last.hash), "checkpoint.seq"),
        (point(1, "ABC"), "checkpoint.hash"),
        (
            Some(pb::ChainCheckpoint {
                seq: last.seq,
                hash: last.hash.clone(),
                signed_at_us: 1,
                key_id: "0000000000000000".into(),
                signature: "00".repeat(64),
            }),
            "checkpoint.key_id",
        ),
    ] {
        expect_violations(verify_raw(&app, bad).await, &[field], field);
    }
}

async fn checkpoints_are_published_on_the_feed_and_verify_with_the_published_key(backend: Backend) {
    let app = spawn_app_with(
        backend,
        SpawnOptions {
            checkpoint_every_events: Some(3),
            ..SpawnOptions::default()
        },
    )
    .await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    for _ in 0..3 {
        applicant.submitted(valid_application()).await;
    }
    let token = app.token(WANGCHENG, &[Role::SyncClient], None, "archive-system");
    let key = AuditServiceClient::new(channel(&app).await)
        .get_audit_key(with_bearer(pb::GetAuditKeyRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.algorithm, "Ed25519");
    assert!(key.generated, "no key file is configured in the tests");
    assert!(key.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let public = VerifyingKey::from_bytes(&key.public_key.clone().try_into().unwrap()).unwrap();
    let changes = SyncServiceClient::new(channel(&app).await)
        .list_changes(with_bearer(
            pb::ListChangesRequest {
                page_size: 500,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .changes;
    let events = app.events(WANGCHENG, None).await;
    let checkpoints: Vec<&pb::Change> = changes
        .iter()
        .filter(|c| c.action == "audit.checkpoint")
        .collect();
    assert!(checkpoints.len() >= 2, "{} checkpoints", checkpoints.len());
    let mut last_signed = None;
    for c in &checkpoints {
        let state: Value = serde_json::from_str(&c.state_json).unwrap();
        let seq = state["seq"].as_i64().unwrap();
        let hash = state["hash"].as_str().unwrap();
        let signed_at_us = state["signed_at_us"].as_i64().unwrap();
        assert_eq!(
            seq,
            c.sequence - 1,
            "a checkpoint names the event before it"
        );
        assert_eq!(hash, events[(seq - 1) as usize].hash);
        assert_eq!(state["key_id"].as_str().unwrap(), key.key_id);
        let message =
            format!("relief.audit.checkpoint.v1\n{WANGCHENG}\n{seq}\n{hash}\n{signed_at_us}\n");
        let signature: [u8; 64] = (0..64)
            .map(|i| {
                u8::from_str_radix(&state["signature"].as_str().unwrap()[2 * i..2 * i + 2], 16)
                    .unwrap()
            })
            .collect::<Vec<u8>>()
            .try_into()
            .unwrap();
        public
            .verify_strict(message.as_bytes(), &Signature::from_bytes(&signature))
            .expect("the checkpoint verifies with the published key");
        last_signed = Some(pb::ChainCheckpoint {
            seq,
            hash: hash.to_owned(),
            signed_at_us,
            key_id: key.key_id.clone(),
            signature: state["signature"].as_str().unwrap().to_owned(),
        });
    }
    let report = verify(&app, last_signed.clone()).await;
    assert!(report.intact, "{report:?}");
    assert_eq!(report.checkpoints_verified, checkpoints.len() as i64);
    // A signed checkpoint whose signature was altered is refused.
    let mut forged = last_signed.unwrap();
    forged.seq -= 1;
    expect_violations(
        verify_raw(&app, Some(forged)).await,
        &["checkpoint.signature"],
        "a forged checkpoint",
    );
}

async fn ledger_entries_without_a_case_or_of_an_unknown_case_are_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(verify_ledger(&app).await.consistent);
    // Two reservations of 500,000 yuan each written around the write path: one naming no
    // case, one naming a case that does not exist.
    let unknown = uuid::Uuid::now_v7().to_string();
    for case in ["NULL".to_owned(), format!("'{unknown}'")] {
        exec(
            &app,
            &format!(
                "INSERT INTO ledger_entries (district_id, fiscal_year, case_id, kind, amount_fen, actor_subject, created_at) \
                 SELECT district_id, fiscal_year, {case}, 'reserve', 50000000, actor_subject, created_at \
                 FROM ledger_entries WHERE district_id = '{WANGCHENG}' AND kind = 'allocate'"
            ),
        )
        .await;
    }
    let report = verify_ledger(&app).await;
    assert!(!report.consistent);
    let problems = report.problems.join("\n");
    assert!(problems.contains("(reserve) names no case"), "{problems}");
    assert!(
        problems.contains(&format!(
            "names case {unknown}, which is not a case of this district and year"
        )),
        "{problems}"
    );
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| p.ends_with("has no audit event"))
            .count(),
        2,
        "{problems}"
    );
}

async fn a_ledger_entry_whose_audit_event_was_edited_or_removed_is_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    let ok = verify_ledger(&app).await;
    assert!(ok.consistent, "{:?}", ok.problems);
    // The budget's allocation has its own event: the intruder edits the amount it recorded.
    let entry_event = |e: &&relief_store::EventRecord| e.action == "ledger.entry_added";
    let events = app.events(WANGCHENG, None).await;
    let allocation = events.iter().find(entry_event).unwrap();
    let entry_id = allocation.resource_id.clone();
    exec(
        &app,
        &format!(
            "UPDATE events SET after_json = REPLACE(after_json, '128000000', '1') \
             WHERE district_id = '{WANGCHENG}' AND seq = {}",
            allocation.seq
        ),
    )
    .await;
    let edited = verify_ledger(&app).await;
    assert_eq!(
        edited.problems,
        vec![format!("entry {entry_id} differs from its audit event")]
    );
    // Then removes the event.
    exec(
        &app,
        &format!(
            "DELETE FROM events WHERE district_id = '{WANGCHENG}' AND seq = {}",
            allocation.seq
        ),
    )
    .await;
    let removed = verify_ledger(&app).await;
    assert_eq!(
        removed.problems,
        vec![format!("entry {entry_id} has no audit event")]
    );
}

/// A database written before migration m0007 (three events, one ledger entry) gets its chain
/// head, last checkpoint time and ledger watermark from what it holds.
async fn the_upgrade_takes_the_chain_head_from_the_events(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, pg) = match backend {
        Backend::Sqlite => (format!("sqlite://{}/relief.db", dir.path().display()), None),
        Backend::Postgres => {
            let (pg, url) = create_pg_database(&postgres_url().unwrap()).await;
            (url, Some(pg))
        }
    };
    let store = Store::connect(&url, &DbSettings::default()).await.unwrap();
    let db = store.connection();
    Migrator::up(db, Some(5)).await.unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO districts (id, name, current_rules_version, created_at, updated_at) \
         VALUES ('{WANGCHENG}', '望城区', 1, '2022-01-01T00:00:00+00:00', '2022-01-01T00:00:00+00:00')"
    ))
    .await
    .unwrap();
    let mut prev = GENESIS_HASH.to_owned();
    for seq in 1..=3i64 {
        let action = format!("case.step{seq}");
        let fields = EventFields {
            district_id: WANGCHENG,
            seq,
            occurred_at_us: 1_000 * seq,
            actor_subject: "u",
            actor_name: "n",
            actor_role: "case_officer",
            on_behalf_of: None,
            action: &action,
            resource_type: "case",
            resource_id: "c",
            request_id: None,
            note: None,
            before_json: None,
            after_json: None,
        };
        let hash = chain_hash(&prev, &fields);
        db.execute_unprepared(&format!(
            "INSERT INTO events (district_id, seq, occurred_at_us, actor_subject, actor_name, actor_role, \
             action, resource_type, resource_id, prev_hash, hash) \
             VALUES ('{WANGCHENG}', {seq}, {}, 'u', 'n', 'case_officer', '{action}', 'case', 'c', '{prev}', '{hash}')",
            1_000 * seq
        ))
        .await
        .unwrap();
        prev = hash;
    }
    db.execute_unprepared(&format!(
        "INSERT INTO ledger_entries (district_id, fiscal_year, case_id, kind, amount_fen, actor_subject, created_at) \
         VALUES ('{WANGCHENG}', 2022, NULL, 'allocate', 100, 'u', '2022-01-01T00:00:00+00:00')"
    ))
    .await
    .unwrap();
    Migrator::up(db, None).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT chain_head_seq, chain_head_hash, checkpoint_seq, checkpoint_at_us, \
             ledger_audited_after_id, (SELECT MAX(id) FROM ledger_entries) AS entry FROM districts",
        ))
        .await
        .unwrap()
        .unwrap();
    let got = (
        row.try_get::<i64>("", "chain_head_seq").unwrap(),
        row.try_get::<String>("", "chain_head_hash").unwrap(),
        row.try_get::<i64>("", "checkpoint_seq").unwrap(),
        row.try_get::<i64>("", "checkpoint_at_us").unwrap(),
        row.try_get::<i64>("", "ledger_audited_after_id").unwrap(),
    );
    let entry = row.try_get::<i64>("", "entry").unwrap();
    assert_eq!(got, (3, prev.clone(), 0, 3_000, entry));
    let report = store
        .verify_audit_chain(&district_id(WANGCHENG), None)
        .await
        .unwrap();
    assert_eq!(
        (report.first_break, report.events_checked, report.head_hash),
        (None, 3, prev)
    );
    drop(store);
    if let Some(pg) = pg {
        drop_pg_database(pg);
    }
}

/// With `audit.signing_key_path`, that key signs, and GetAuditKey says it was not generated;
/// a file that holds no Ed25519 key is a configuration error naming the setting.
async fn a_configured_key_signs_the_checkpoints(backend: Backend) {
    use ed25519_dalek::pkcs8::DecodePublicKey as _;
    let app = spawn_app_with(
        backend,
        SpawnOptions {
            checkpoint_every_events: Some(2),
            audit_signing_key_pem: Some(TEST_ED25519_PEM),
            ..SpawnOptions::default()
        },
    )
    .await;
    app.applicant(WANGCHENG, "gaotangling")
        .submitted(valid_application())
        .await;
    let token = app.token(WANGCHENG, &[Role::Auditor], None, "auditor");
    let key = AuditServiceClient::new(channel(&app).await)
        .get_audit_key(with_bearer(pb::GetAuditKeyRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(!key.generated);
    let configured =
        VerifyingKey::from_public_key_pem(std::str::from_utf8(TEST_ED25519_PUB_PEM).unwrap())
            .unwrap();
    assert_eq!(key.public_key, configured.to_bytes().to_vec());
    let report = verify(&app, None).await;
    assert!(report.intact, "{report:?}");
    assert!(report.checkpoints_verified >= 1, "{report:?}");
    assert_eq!(report.checkpoints_other_key, 0);

    let mut bad = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut bad, TEST_ED25519_PUB_PEM).unwrap();
    let text = format!(
        "{}\n[audit]\nsigning_key_path = '{}'\n",
        relief_tests::settings_toml("sqlite://unused.db", 1),
        bad.path().display()
    );
    let err = reliefd::settings::Settings::from_toml(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audit.signing_key_path"), "{err}");
}

/// A district with no write since its last events still gets them checkpointed once the
/// interval has passed: here by the sweep of a server started an hour later on the same
/// database (the running server sweeps every minute as well).
async fn an_idle_districts_last_events_get_their_checkpoint(backend: Backend) {
    use relief_domain::ManualClock;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (url, pg) = match backend {
        Backend::Sqlite => (format!("sqlite://{}/relief.db", dir.path().display()), None),
        Backend::Postgres => {
            let (pg, url) = create_pg_database(&postgres_url().unwrap()).await;
            (url, Some(pg))
        }
    };
    let start = chrono::DateTime::parse_from_rfc3339("2022-03-01T09:00:00+08:00")
        .unwrap()
        .to_utc();
    let build = |minutes: i64| {
        let settings =
            reliefd::settings::Settings::from_toml(&relief_tests::settings_toml(&url, 4)).unwrap();
        let clock = Arc::new(ManualClock::new(start + chrono::Duration::minutes(minutes)));
        reliefd::Application::build_with_clock(settings, clock)
    };
    let actions = |app: &reliefd::Application| {
        let store = app.store();
        async move {
            store
                .events(&district_id(WANGCHENG), None)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect::<Vec<_>>()
        }
    };
    // Declaring the district writes its first events; nothing is due yet.
    let first = build(0).await.unwrap();
    let declared = actions(&first).await;
    assert_eq!(declared, ["district.created", "ledger.entry_added"]);
    drop(first);
    // Started again 59 minutes later: still nothing due.
    let early = build(59).await.unwrap();
    assert_eq!(actions(&early).await, declared);
    drop(early);
    // An hour after them, the events are checkpointed without any write.
    let later = build(60).await.unwrap();
    assert_eq!(
        actions(&later).await,
        ["district.created", "ledger.entry_added", "audit.checkpoint"]
    );
    let report = later
        .store()
        .verify_audit_chain(&district_id(WANGCHENG), None)
        .await
        .unwrap();
    assert_eq!((report.first_break, report.checkpoints_verified), (None, 1));
    drop(later);
    // Nothing new since: a later start signs no second checkpoint.
    let again = build(600).await.unwrap();
    assert_eq!(actions(&again).await.len(), 3);
    drop(again);
    if let Some(pg) = pg {
        drop_pg_database(pg);
    }
}
