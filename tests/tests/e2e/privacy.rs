//! Least privilege: the masking table (README "Who sees what") walked role by role over
//! GetCase, ListCases, the case export and the change feed; an applicant unit's rights kept to
//! its own unit's cases whatever other roles its token holds; and who reads which district.

use relief_proto::v1 as pb;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_tests::gateway::{gateway_settings, spawn_gateway};
use relief_tests::{
    ApplicationBuilder, BANK_ACCOUNT, Backend, Caller, FURONG, Role, TestApp, WANGCHENG,
    backend_tests, expect_code, masked_resident_id, next_resident_id, spawn_app,
};
use tonic::Code;

backend_tests!(
    every_role_sees_personal_data_as_the_table_says,
    an_applicant_units_rights_stop_at_its_own_cases,
    districts_are_read_as_the_contract_says,
);

/// The recipient's phone, address and situation in every built application.
const PHONE: &str = "13800000000";
const ADDRESS: &str = "望城区高塘岭街道同心社区";
const SITUATION: &str = "家庭困难，长期患病，无固定收入";

#[derive(Debug, Clone, Copy)]
enum Shown {
    Full,
    Masked,
    Withheld,
}
use Shown::{Full, Masked, Withheld};

/// The table as the README states it. Columns: resident ID number, bank account, phone,
/// address, basic situation.
const TABLE: [(Role, [Shown; 5]); 11] = [
    (Role::ApplicantUnit, [Full, Full, Full, Full, Full]),
    (Role::CaseOfficer, [Full, Full, Full, Full, Full]),
    (Role::DeputyLeader, [Masked, Masked, Withheld, Masked, Full]),
    (Role::BureauHead, [Masked, Masked, Withheld, Masked, Full]),
    (Role::BureauOffice, [Masked, Masked, Withheld, Masked, Full]),
    (
        Role::DistrictLeader,
        [Masked, Masked, Withheld, Masked, Full],
    ),
    (Role::Finance, [Masked, Full, Withheld, Withheld, Withheld]),
    (Role::Auditor, [Masked, Masked, Withheld, Masked, Withheld]),
    (
        Role::DistrictAdmin,
        [Masked, Withheld, Withheld, Withheld, Withheld],
    ),
    (Role::CityAdmin, [Withheld; 5]),
    (
        Role::SyncClient,
        [Masked, Masked, Withheld, Withheld, Withheld],
    ),
];

/// The five personal fields as one reader got them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Personal {
    resident_id: String,
    bank_account: String,
    phone: String,
    address: String,
    situation: String,
}

/// What a row of the table shows of a case whose resident ID number is `rid`.
fn expected(row: [Shown; 5], rid: &str) -> Personal {
    let pick = |shown: Shown, full: &str, masked: &str| match shown {
        Full => full.to_owned(),
        Masked => masked.to_owned(),
        Withheld => String::new(),
    };
    Personal {
        resident_id: pick(row[0], rid, &masked_resident_id(rid)),
        bank_account: pick(row[1], BANK_ACCOUNT, "************1234"),
        phone: pick(row[2], PHONE, "138****0000"),
        address: pick(row[3], ADDRESS, "望城区高塘岭******"),
        situation: pick(row[4], SITUATION, ""),
    }
}

fn of_case(case: &pb::Case) -> Personal {
    let app = case.application.as_ref().unwrap();
    let r = app.recipient.as_ref().unwrap();
    Personal {
        resident_id: r.resident_id_number.clone(),
        bank_account: app.receiving_unit.as_ref().unwrap().bank_account.clone(),
        phone: r.phone.clone(),
        address: r.address.clone(),
        situation: app.basic_situation.clone(),
    }
}

/// The same fields in a case's state as the change feed carries it.
fn of_state(json: &str) -> Personal {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let s = |path: &[&str]| {
        path.iter()
            .fold(&v, |v, k| &v[k])
            .as_str()
            .unwrap_or_else(|| panic!("{path:?} in {json}"))
            .to_owned()
    };
    Personal {
        resident_id: s(&["application", "recipient", "resident_id"]),
        bank_account: s(&["application", "receiving_unit", "bank_account"]),
        phone: s(&["application", "recipient", "phone"]),
        address: s(&["application", "recipient", "address"]),
        situation: s(&["application", "basic_situation"]),
    }
}

/// The case's state in the latest change about it that `caller` reads in the feed.
async fn feed_state(app: &TestApp, caller: &Caller, case_id: &str) -> Personal {
    let changes = SyncServiceClient::new(app.channel())
        .list_changes(caller.request(pb::ListChangesRequest {
            page_size: 500,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .changes;
    let last = changes
        .iter()
        .rev()
        .find(|c| c.resource_id == case_id)
        .unwrap_or_else(|| panic!("{}: no change of the case", caller.subject));
    of_state(&last.state_json)
}

/// The resident ID number column of the case's row in the year's case export.
async fn exported_resident_id(app: &TestApp, caller: &Caller, case_id: &str) -> String {
    let csv = ReportServiceClient::new(app.channel())
        .export_cases(caller.request(pb::ExportCasesRequest {
            fiscal_year: 2022,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .csv;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|h| *h == "resident_id_number")
        .unwrap();
    let row = lines
        .find(|l| l.starts_with(case_id))
        .unwrap_or_else(|| panic!("{}: case not exported", caller.subject));
    row.split(',').nth(column).unwrap().to_owned()
}

/// The callers holding `role`: in the district, and for the city-scoped roles also at the
/// city naming the district.
fn holders(app: &TestApp, role: Role, filer: &Caller) -> Vec<Caller> {
    match role {
        Role::ApplicantUnit => vec![filer.clone()],
        Role::CityAdmin => vec![app.city_admin().naming(WANGCHENG)],
        Role::Auditor | Role::SyncClient => {
            vec![app.staff(WANGCHENG, role), app.city(role).naming(WANGCHENG)]
        }
        Role::CaseOfficer
        | Role::DeputyLeader
        | Role::BureauHead
        | Role::BureauOffice
        | Role::DistrictLeader
        | Role::Finance
        | Role::DistrictAdmin => vec![app.staff(WANGCHENG, role)],
    }
}

async fn every_role_sees_personal_data_as_the_table_says(backend: Backend) {
    let app = spawn_app(backend).await;
    let filer = app.applicant(WANGCHENG, "gaotangling");
    let rid = next_resident_id();
    let case = filer
        .submitted(ApplicationBuilder::new().resident_id(&rid).build())
        .await;
    assert_eq!(of_case(&case), expected([Full; 5], &rid), "as filed");
    for (role, row) in TABLE {
        let want = expected(row, &rid);
        for caller in holders(&app, role, &filer) {
            let who = format!("{role} ({})", caller.subject);
            if role == Role::CityAdmin {
                // The city administrator reads no case at all: the row is moot, and stays
                // all withheld for a token that adds the role to another.
                expect_code(
                    caller.get_case(&case.case_id).await,
                    Code::PermissionDenied,
                    &who,
                );
                continue;
            }
            let got = caller.get_case(&case.case_id).await.unwrap();
            assert_eq!(of_case(&got), want, "{who}: GetCase");
            let listed = caller.list_all(Default::default()).await;
            let in_list = listed.iter().find(|c| c.case_id == case.case_id).unwrap();
            assert_eq!(of_case(in_list), want, "{who}: ListCases");
            if role != Role::ApplicantUnit {
                assert_eq!(
                    exported_resident_id(&app, &caller, &case.case_id).await,
                    want.resident_id,
                    "{who}: ExportCases"
                );
            }
            if matches!(role, Role::Auditor | Role::SyncClient) {
                assert_eq!(
                    feed_state(&app, &caller, &case.case_id).await,
                    want,
                    "{who}: ListChanges"
                );
            }
        }
    }
}

async fn an_applicant_units_rights_stop_at_its_own_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    // A street office whose clerk is also the district's auditor.
    let token = app.token(
        WANGCHENG,
        &[Role::Auditor, Role::ApplicantUnit],
        Some("gaotangling"),
        "gaotangling-auditor",
    );
    let both = app.caller(token, "gaotangling-auditor");
    let own_rid = next_resident_id();
    let own = both
        .submitted(ApplicationBuilder::new().resident_id(&own_rid).build())
        .await;
    let other_rid = next_resident_id();
    let other = app
        .applicant(WANGCHENG, "huangjinyuan")
        .submitted(ApplicationBuilder::new().resident_id(&other_rid).build())
        .await;
    let full = expected([Full; 5], &own_rid);
    let as_auditor = expected(TABLE[7].1, &other_rid);
    assert_eq!(TABLE[7].0, Role::Auditor);
    assert_eq!(of_case(&own), full, "its own filing");

    assert_eq!(of_case(&both.get_case(&own.case_id).await.unwrap()), full);
    assert_eq!(
        of_case(&both.get_case(&other.case_id).await.unwrap()),
        as_auditor,
        "another unit's case, as an auditor sees it"
    );
    let listed = both.list_all(Default::default()).await;
    let find = |id: &str| of_case(listed.iter().find(|c| c.case_id == id).unwrap());
    assert_eq!(find(&own.case_id), full);
    assert_eq!(find(&other.case_id), as_auditor);
    assert_eq!(feed_state(&app, &both, &own.case_id).await, full);
    assert_eq!(
        feed_state(&app, &both, &other.case_id).await,
        as_auditor,
        "the change feed"
    );
    assert_eq!(
        exported_resident_id(&app, &both, &other.case_id).await,
        masked_resident_id(&other_rid),
        "the export"
    );
}

fn ids(list: &pb::ListDistrictsResponse) -> Vec<&str> {
    list.districts
        .iter()
        .map(|d| d.district_id.as_str())
        .collect()
}

async fn districts_are_read_as_the_contract_says(backend: Backend) {
    let app = spawn_app(backend).await;
    // Every district-scoped role: its own district only.
    for role in Role::ALL.into_iter().filter(|r| *r != Role::CityAdmin) {
        let caller = if role == Role::ApplicantUnit {
            app.applicant(WANGCHENG, "gaotangling")
        } else {
            app.staff(WANGCHENG, role)
        };
        let list = caller.list_districts(Default::default()).await.unwrap();
        assert_eq!(ids(&list), [WANGCHENG], "{role}");
        assert_eq!(
            caller.get_district(WANGCHENG).await.unwrap().district_id,
            WANGCHENG
        );
        expect_code(
            caller.get_district(FURONG).await,
            Code::NotFound,
            &format!("{role}: another district"),
        );
    }
    // The city administrator: every district, whether or not it names one.
    for admin in [app.city_admin(), app.city_admin().naming(WANGCHENG)] {
        let list = admin.list_districts(Default::default()).await.unwrap();
        assert_eq!(ids(&list), [FURONG, WANGCHENG]);
        for id in [FURONG, WANGCHENG] {
            assert_eq!(admin.get_district(id).await.unwrap().district_id, id);
        }
    }
    // The city's auditors and sync clients: the district they name, and nothing without one.
    for role in [Role::Auditor, Role::SyncClient] {
        let city = app.city(role);
        expect_code(
            city.list_districts(Default::default()).await,
            Code::PermissionDenied,
            &format!("city {role} naming no district: list"),
        );
        expect_code(
            city.get_district(WANGCHENG).await,
            Code::PermissionDenied,
            &format!("city {role} naming no district: get"),
        );
        for (named, other) in [(WANGCHENG, FURONG), (FURONG, WANGCHENG)] {
            let caller = city.naming(named);
            let list = caller.list_districts(Default::default()).await.unwrap();
            assert_eq!(ids(&list), [named], "city {role} naming {named}");
            assert_eq!(caller.get_district(named).await.unwrap().district_id, named);
            expect_code(
                caller.get_district(other).await,
                Code::NotFound,
                &format!("city {role} naming {named}: {other}"),
            );
        }
    }
    // Through the city gateway, which asks every backend, the same.
    let gw = spawn_gateway(gateway_settings(&[(&app, &[WANGCHENG, FURONG])])).await;
    let auditor = app.city(Role::Auditor).on(gw.channel());
    expect_code(
        auditor.list_districts(Default::default()).await,
        Code::PermissionDenied,
        "through the gateway, naming no district",
    );
    let named = auditor
        .naming(FURONG)
        .list_districts(Default::default())
        .await
        .unwrap();
    assert_eq!(ids(&named), [FURONG]);
    let all = app
        .city_admin()
        .on(gw.channel())
        .list_districts(Default::default())
        .await
        .unwrap();
    assert_eq!(ids(&all), [FURONG, WANGCHENG]);
}
