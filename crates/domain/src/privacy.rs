//! Who sees which personal data of a recipient, in one table: for each role and each personal
//! field, full, masked or withheld. Every read that returns personal data (cases, tasks,
//! payments, exports, the change feed) asks [`View`] and nothing else, so the policy is
//! changed here or nowhere.
//!
//! The fields are the recipient's resident ID number, phone and address, the application's
//! basic situation (基本情况, health and family circumstances in the recipient's words), and
//! the receiving unit's bank account. The name is not among them: every reader needs to know
//! whom a case is about, and the name alone identifies nobody in a district's files.
//!
//! The forms:
//! - **full**: the value as filed.
//! - **masked**: enough to tell two records apart and to match one against a paper file, not
//!   enough to use. Each hidden character becomes `*`, so the length stays:
//!   a resident ID keeps its first 6 (the region code) and last 4 (`430122********1239`); a
//!   bank account its last 4 (`************1234`); a phone its first 3 and last 4
//!   (`138****0000`); an address its first 6 characters, which name the district and street
//!   (`望城区高塘岭******`). A value too short for its form to hide at least 4 characters
//!   shows at most its last half (`12345` as a phone is `***45`), so masking never shows a
//!   value whole.
//! - **withheld**: the empty string, the same as a field never filled in. No marker text:
//!   systems that copy relief's data would store a marker as if it were the recipient's
//!   circumstances, and an empty field cannot be mistaken for data.
//!
//! The table, with the duty each row follows from:
//!
//! | role | resident ID | bank account | phone | address | situation |
//! | --- | --- | --- | --- | --- | --- |
//! | `applicant_unit` (own unit's cases) | full | full | full | full | full |
//! | `case_officer` | full | full | full | full | full |
//! | `deputy_leader` | masked | masked | withheld | masked | full |
//! | `bureau_head` | masked | masked | withheld | masked | full |
//! | `bureau_office` | masked | masked | withheld | masked | full |
//! | `district_leader` | masked | masked | withheld | masked | full |
//! | `finance` | masked | full | withheld | withheld | withheld |
//! | `auditor` | masked | masked | withheld | masked | withheld |
//! | `district_admin` | masked | withheld | withheld | withheld | withheld |
//! | `city_admin` | withheld | withheld | withheld | withheld | withheld |
//! | `sync_client` | masked | masked | withheld | withheld | withheld |
//!
//! - `applicant_unit` filed the case and met the recipient: it wrote every field. Its rights
//!   reach its own unit's cases only (see [`View::for_case`]).
//! - `case_officer` (经办科室) checks identity against the documents, calls the recipient,
//!   visits the address and checks the receiving unit's account: every field, in full.
//! - `deputy_leader`, `bureau_head`, `district_leader` decide, and `bureau_office` puts the
//!   case before the party group and writes its minutes. A decision rests on the recipient's
//!   circumstances, so the situation is full; identity and account were checked by the case
//!   officer, so the masked forms tell the case apart; where the recipient lives matters to
//!   the decision only down to the street; nobody deciding calls the recipient.
//! - `finance` (财务科) pays the receiving unit: its account in full. The masked ID lets the
//!   voucher name the right person; where the recipient lives and why they are helped are
//!   not part of a payment.
//! - `auditor` (区财政局, inspectors) checks that money went to real, eligible people of the
//!   district by the rules: masked ID and account to match records against statements and
//!   files, the address down to the street for residence; the circumstances are the
//!   deciders' and stay with them.
//! - `district_admin` maintains the fund rules and imports history: the masked ID tells
//!   imported records apart; nothing else of a recipient is part of that work.
//! - `city_admin` creates districts and reads no case.
//! - `sync_client` is an unattended copy in another system: masked identifiers link its
//!   records without putting the values into one more database. A system whose duty needs
//!   more carries the role of that duty too (a payment system: `sync_client` and
//!   `finance`), and sees what that role sees.
//!
//! A token holding several roles sees each field in the widest form any of them allows.

use crate::ids::UnitId;
use crate::role::Role;

/// A piece of personal data that the table governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The recipient's resident ID number (公民身份号码).
    ResidentId,
    /// The receiving unit's bank account (接受拨款单位账号).
    BankAccount,
    /// The recipient's phone.
    Phone,
    /// The recipient's address.
    Address,
    /// The application's basic situation (基本情况).
    Situation,
}

impl Field {
    /// Every field, in the table's column order.
    pub const ALL: [Field; 5] = [
        Field::ResidentId,
        Field::BankAccount,
        Field::Phone,
        Field::Address,
        Field::Situation,
    ];

    /// The characters a masked value keeps at its start and at its end.
    const fn kept(self) -> (usize, usize) {
        match self {
            Field::ResidentId => (6, 4),
            Field::BankAccount => (0, 4),
            Field::Phone => (3, 4),
            Field::Address => (6, 0),
            // Free text has no useful masked form: a masked situation is shown as withheld.
            Field::Situation => (0, 0),
        }
    }
}

/// How much of a field a reader sees. Ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exposure {
    /// Not shown: the empty string.
    Withheld,
    /// Shown in its masked form ([`mask`]).
    Masked,
    /// Shown as filed.
    Full,
}

/// The fewest characters a masked value hides.
const MIN_HIDDEN: usize = 4;

/// The masked form of `value` as a value of `field`; see the module documentation.
pub fn mask(field: Field, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let (head, tail) = field.kept();
    let (head, tail) = if head + tail + MIN_HIDDEN <= n {
        (head, tail)
    } else {
        (0, tail.min(n / 2))
    };
    let hidden_end = n.saturating_sub(tail);
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < head || i >= hidden_end { *c } else { '*' })
        .collect()
}

/// What one reader sees of each personal field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct View {
    pub resident_id: Exposure,
    pub bank_account: Exposure,
    pub phone: Exposure,
    pub address: Exposure,
    pub situation: Exposure,
}

impl View {
    /// Nothing of anyone: the view of a token with no role that reads personal data.
    pub const NOTHING: View = View {
        resident_id: Exposure::Withheld,
        bank_account: Exposure::Withheld,
        phone: Exposure::Withheld,
        address: Exposure::Withheld,
        situation: Exposure::Withheld,
    };

    /// Everything as filed.
    pub const EVERYTHING: View = View {
        resident_id: Exposure::Full,
        bank_account: Exposure::Full,
        phone: Exposure::Full,
        address: Exposure::Full,
        situation: Exposure::Full,
    };

    /// The table: one row per role, one column per field. For `applicant_unit` the row holds
    /// for its own unit's cases; [`View::for_case`] keeps it to them.
    pub const fn of_role(role: Role) -> View {
        use Exposure::{Full, Masked, Withheld};
        match role {
            Role::ApplicantUnit | Role::CaseOfficer => View {
                resident_id: Full,
                bank_account: Full,
                phone: Full,
                address: Full,
                situation: Full,
            },
            Role::DeputyLeader | Role::BureauHead | Role::BureauOffice | Role::DistrictLeader => {
                View {
                    resident_id: Masked,
                    bank_account: Masked,
                    phone: Withheld,
                    address: Masked,
                    situation: Full,
                }
            }
            Role::Finance => View {
                resident_id: Masked,
                bank_account: Full,
                phone: Withheld,
                address: Withheld,
                situation: Withheld,
            },
            Role::Auditor => View {
                resident_id: Masked,
                bank_account: Masked,
                phone: Withheld,
                address: Masked,
                situation: Withheld,
            },
            Role::DistrictAdmin => View {
                resident_id: Masked,
                bank_account: Withheld,
                phone: Withheld,
                address: Withheld,
                situation: Withheld,
            },
            Role::CityAdmin => View::NOTHING,
            Role::SyncClient => View {
                resident_id: Masked,
                bank_account: Masked,
                phone: Withheld,
                address: Withheld,
                situation: Withheld,
            },
        }
    }

    /// How much of `field` this view shows.
    pub const fn get(&self, field: Field) -> Exposure {
        match field {
            Field::ResidentId => self.resident_id,
            Field::BankAccount => self.bank_account,
            Field::Phone => self.phone,
            Field::Address => self.address,
            Field::Situation => self.situation,
        }
    }

    /// Each field in the wider of the two forms.
    pub fn widest(self, other: View) -> View {
        View {
            resident_id: self.resident_id.max(other.resident_id),
            bank_account: self.bank_account.max(other.bank_account),
            phone: self.phone.max(other.phone),
            address: self.address.max(other.address),
            situation: self.situation.max(other.situation),
        }
    }

    /// What a token holding `roles` sees, `applicant_unit` left out: the view of a case that
    /// is not its unit's, or of data whose case is not known.
    pub fn without_unit(roles: &[Role]) -> View {
        roles
            .iter()
            .filter(|r| **r != Role::ApplicantUnit)
            .fold(View::NOTHING, |v, r| v.widest(View::of_role(*r)))
    }

    /// What a token holding `roles` (and naming `own_unit`, for an applicant unit) sees of a
    /// case filed by `case_unit`: an applicant unit's rights count for its own unit's cases
    /// only; for another unit's case the token's other roles decide alone.
    pub fn for_case(roles: &[Role], own_unit: Option<&UnitId>, case_unit: &UnitId) -> View {
        let others = View::without_unit(roles);
        if roles.contains(&Role::ApplicantUnit) && own_unit == Some(case_unit) {
            others.widest(View::of_role(Role::ApplicantUnit))
        } else {
            others
        }
    }

    /// `value` of `field` as this view shows it.
    pub fn show(&self, field: Field, value: &str) -> String {
        match self.get(field) {
            Exposure::Full => value.to_owned(),
            Exposure::Masked if field == Field::Situation => String::new(),
            Exposure::Masked => mask(field, value),
            Exposure::Withheld => String::new(),
        }
    }

    /// Whether this view shows every field as filed.
    pub fn is_everything(&self) -> bool {
        *self == View::EVERYTHING
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// The table as the documentation states it, row by row, so a change to one must be a
    /// change to both. Columns: resident ID, bank account, phone, address, situation.
    const DOCUMENTED: [(Role, [char; 5]); 11] = [
        (Role::ApplicantUnit, ['F', 'F', 'F', 'F', 'F']),
        (Role::CaseOfficer, ['F', 'F', 'F', 'F', 'F']),
        (Role::DeputyLeader, ['M', 'M', 'W', 'M', 'F']),
        (Role::BureauHead, ['M', 'M', 'W', 'M', 'F']),
        (Role::BureauOffice, ['M', 'M', 'W', 'M', 'F']),
        (Role::DistrictLeader, ['M', 'M', 'W', 'M', 'F']),
        (Role::Finance, ['M', 'F', 'W', 'W', 'W']),
        (Role::Auditor, ['M', 'M', 'W', 'M', 'W']),
        (Role::DistrictAdmin, ['M', 'W', 'W', 'W', 'W']),
        (Role::CityAdmin, ['W', 'W', 'W', 'W', 'W']),
        (Role::SyncClient, ['M', 'M', 'W', 'W', 'W']),
    ];

    fn exposure_of(c: char) -> Exposure {
        match c {
            'F' => Exposure::Full,
            'M' => Exposure::Masked,
            _ => Exposure::Withheld,
        }
    }

    #[test]
    fn the_table_is_the_documented_one() {
        assert_eq!(
            DOCUMENTED.map(|(r, _)| r),
            Role::ALL,
            "every role, in order"
        );
        for (role, row) in DOCUMENTED {
            for (field, cell) in Field::ALL.into_iter().zip(row) {
                assert_eq!(
                    View::of_role(role).get(field),
                    exposure_of(cell),
                    "{role} {field:?}"
                );
            }
        }
    }

    #[test]
    fn the_documentation_carries_the_table() {
        let docs = [
            ("privacy.rs", include_str!("privacy.rs")),
            ("README.md", include_str!("../../../README.md")),
        ];
        let cell = |e: Exposure| match e {
            Exposure::Full => "full",
            Exposure::Masked => "masked",
            Exposure::Withheld => "withheld",
        };
        for (doc, text) in docs {
            for role in Role::ALL {
                let v = View::of_role(role);
                let cells: Vec<&str> = Field::ALL.into_iter().map(|f| cell(v.get(f))).collect();
                let suffix = format!(" | {} |", cells.join(" | "));
                let found = text.lines().any(|l| {
                    let l = l.trim_start_matches("//! ");
                    l.starts_with(&format!("| `{}`", role.as_str())) && l.ends_with(&suffix)
                });
                assert!(found, "{doc}: the row of {role} says{suffix}");
            }
        }
    }

    #[test]
    fn masked_forms() {
        let cases = [
            (
                Field::ResidentId,
                "11010519491231002X",
                "110105********002X",
            ),
            (Field::BankAccount, "6230901234561234", "************1234"),
            (Field::Phone, "13800000000", "138****0000"),
            (Field::Phone, "0731-88888888", "073******8888"),
            (
                Field::Address,
                "望城区高塘岭街道同心社区",
                "望城区高塘岭******",
            ),
            // Too short for the form: at most the last half shows.
            (Field::Phone, "12345", "***45"),
            (Field::BankAccount, "12", "*2"),
            (Field::Address, "望城区", "***"),
            (Field::ResidentId, "", ""),
            (Field::Situation, "家庭困难", "****"),
        ];
        for (field, value, masked) in cases {
            assert_eq!(mask(field, value), masked, "{field:?} {value}");
        }
    }

    #[test]
    fn show_follows_the_exposure() {
        let v = View {
            resident_id: Exposure::Full,
            bank_account: Exposure::Masked,
            phone: Exposure::Withheld,
            address: Exposure::Masked,
            situation: Exposure::Masked,
        };
        assert_eq!(
            v.show(Field::ResidentId, "11010519491231002X"),
            "11010519491231002X"
        );
        assert_eq!(
            v.show(Field::BankAccount, "6230901234561234"),
            "************1234"
        );
        assert_eq!(v.show(Field::Phone, "13800000000"), "");
        assert_eq!(
            v.show(Field::Situation, "家庭困难"),
            "",
            "no masked free text"
        );
    }

    #[test]
    fn an_applicant_units_rights_stop_at_its_own_cases() {
        let own = UnitId::parse("gaotangling").unwrap();
        let other = UnitId::parse("huangjinyuan").unwrap();
        let roles = [Role::ApplicantUnit, Role::Auditor];
        assert_eq!(View::for_case(&roles, Some(&own), &own), View::EVERYTHING);
        assert_eq!(
            View::for_case(&roles, Some(&own), &other),
            View::of_role(Role::Auditor)
        );
        assert_eq!(
            View::for_case(&[Role::ApplicantUnit], Some(&own), &other),
            View::NOTHING
        );
        assert_eq!(
            View::for_case(&[Role::ApplicantUnit], None, &own),
            View::NOTHING,
            "a token naming no unit owns no case"
        );
        // Roles add up field by field.
        let v = View::without_unit(&[Role::Finance, Role::DeputyLeader]);
        assert_eq!(v.bank_account, Exposure::Full);
        assert_eq!(v.situation, Exposure::Full);
        assert_eq!(v.phone, Exposure::Withheld);
    }

    proptest! {
        #[test]
        fn masking_never_shows_a_value_whole(value in "\\PC{1,40}") {
            for field in Field::ALL {
                let masked = mask(field, &value);
                prop_assert_eq!(masked.chars().count(), value.chars().count());
                prop_assert!(masked.contains('*'), "{:?} {} -> {}", field, value, masked);
            }
        }

        #[test]
        fn more_roles_never_see_less(a in 0usize..11, b in 0usize..11) {
            let (ra, rb) = (Role::ALL[a], Role::ALL[b]);
            let both = View::without_unit(&[ra, rb]);
            for field in Field::ALL {
                prop_assert!(both.get(field) >= View::without_unit(&[ra]).get(field));
                prop_assert!(both.get(field) >= View::without_unit(&[rb]).get(field));
            }
        }
    }
}
