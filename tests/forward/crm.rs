//! The CRM resolvers against fake Bitrix24, amoCRM and JSON services on loopback, and the
//! order of the chain.

use deskhook::presence::Presence;

use crate::support::{config, fake_amocrm, fake_bitrix24, fake_http_crm, Amo, Bitrix, BitrixContact, Forward, Mode};

fn bitrix_portal(telephony: bool) -> Bitrix {
    Bitrix {
        contacts: vec![
            BitrixContact {
                id: 11,
                phone: "+7 (916) 123-45-67".into(),
                name: "Ivan".into(),
                last_name: "Petrov".into(),
                assigned_by: "7".into(),
            },
            BitrixContact {
                id: 12,
                phone: "8 916 765 43 21".into(),
                name: "Olga".into(),
                last_name: "Sidorova".into(),
                assigned_by: "7".into(),
            },
            BitrixContact {
                id: 13,
                phone: "79160000013".into(),
                name: "No".into(),
                last_name: "Extension".into(),
                assigned_by: "8".into(),
            },
        ],
        users: [("7".to_string(), "105".to_string())].into_iter().collect(),
        telephony,
    }
}

fn bitrix_config(webhook: &str, lookup: &str) -> deskhook::config::Config {
    config(&format!(
        "[forward]\nbudget_ms = 5000\n[[forward.resolvers]]\nkind = \"bitrix24\"\nwebhook_url = \"{webhook}\"\nlookup = \"{lookup}\"\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_finds_the_responsible_users_internal_number_in_one_request() {
    let portal = fake_bitrix24(bitrix_portal(true)).await;
    let forward = Forward::start(&bitrix_config(&portal.url("/rest/1/s3cret/"), "auto"), Presence::new(), None).await;
    assert_eq!(forward.phone("89161234567").await, "name=Ivan%20Petrov&number=105");
    assert_eq!(portal.hits_of("telephony.externalCall.searchCrmEntities.json"), 1);
    assert_eq!(portal.hits(), 1, "searchCrmEntities carries the user's internal number");
    assert_eq!(forward.phone("79160000013").await, "", "a responsible user without UF_PHONE_INNER routes nowhere");
    assert_eq!(forward.phone("79169999999").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_without_the_telephony_scope_falls_back_to_duplicates_and_user_get() {
    let portal = fake_bitrix24(bitrix_portal(false)).await;
    let forward = Forward::start(&bitrix_config(&portal.url("/rest/1/s3cret"), "auto"), Presence::new(), None).await;
    assert_eq!(forward.phone("+7 916 123-45-67").await, "name=Ivan%20Petrov&number=105");
    assert_eq!(portal.hits_of("telephony.externalCall.searchCrmEntities.json"), 1);
    assert_eq!(portal.hits_of("crm.duplicate.findbycomm.json"), 1);
    assert_eq!(portal.hits_of("crm.contact.get.json"), 1);
    assert_eq!(portal.hits_of("user.get.json"), 1);

    // The refusal is remembered and so is the user's internal number.
    assert_eq!(forward.phone("89167654321").await, "name=Olga%20Sidorova&number=105");
    assert_eq!(portal.hits_of("telephony.externalCall.searchCrmEntities.json"), 1);
    assert_eq!(portal.hits_of("user.get.json"), 1, "the user map is cached");
    assert_eq!(forward.phone("79169999999").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_query_limit_exceeded_is_not_found_now_and_the_portal_is_left_alone() {
    let portal = fake_bitrix24(bitrix_portal(true)).await;
    portal.set_mode(Mode::Status(503));
    let forward =
        Forward::start(&bitrix_config(&portal.url("/rest/1/s3cret/"), "telephony"), Presence::new(), None).await;
    let started = tokio::time::Instant::now();
    assert_eq!(forward.phone("79161234567").await, "");
    assert!(started.elapsed() < forward.service.budget());
    portal.set_mode(Mode::Normal);
    // Another caller during the portal's Retry-After: not sent, not waited for.
    assert_eq!(forward.phone("79167654321").await, "");
    assert_eq!(portal.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_maps_the_responsible_user_to_an_extension() {
    let account = fake_amocrm(Amo {
        contacts: vec![
            // Holds the caller's digits inside a longer number: amoCRM's query finds it, but it is not the caller.
            (3, "Someone Else".into(), "+1 9161234567 8".into(), 504141),
            (1, "Anna Smirnova".into(), "+7 (916) 123-45-67".into(), 504141),
            (2, "Unmapped Manager's Client".into(), "89160000002".into(), 999),
        ],
        companies: vec![(7, "ООО \"Ромашка\"".into(), "8 916 777-77-77".into(), 504142)],
    })
    .await;
    let toml = |token: &str| {
        format!(
            "[forward]\nbudget_ms = 5000\n[[forward.resolvers]]\nkind = \"amocrm\"\nbase_url = \"{}\"\ntoken = \"{token}\"\n\
             users = {{ \"504141\" = \"201\", \"504142\" = \"202\" }}\n",
            account.url("")
        )
    };
    let forward = Forward::start(&config(&toml("amo-t0ken")), Presence::new(), None).await;
    assert_eq!(forward.phone("89161234567").await, "name=Anna%20Smirnova&number=201");
    assert_eq!(forward.phone("79160000002").await, "", "the responsible user has no extension in users");
    assert_eq!(
        forward.phone("+7 916 777 77 77").await,
        "name=%D0%9E%D0%9E%D0%9E%20%D0%A0%D0%BE%D0%BC%D0%B0%D1%88%D0%BA%D0%B0&number=202",
        "no contact: the company's manager, quotes dropped from the name"
    );
    assert_eq!(account.hits_of("contacts"), 3);
    assert_eq!(account.hits_of("companies"), 2);

    let wrong_token = Forward::start(&config(&toml("expired")), Presence::new(), None).await;
    assert_eq!(wrong_token.phone("89161234567").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_resolver_reads_nested_fields_and_numbers() {
    let crm = fake_http_crm(&[("79161234567", "203", "Nested Client")]).await;
    let config = config(&format!(
        "[forward]\nbudget_ms = 5000\n[[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\nname_field = \"client\"\n",
        crm.url("/lookup?phone={phone}&trunk={trunk}")
    ));
    let forward = Forward::start(&config, Presence::new(), None).await;
    assert_eq!(forward.phone("8 916 123 45 67").await, "name=Nested%20Client&number=203");
    assert_eq!(forward.phone("79160000000").await, "", "404 is nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_resolver_in_configured_order_that_names_an_extension_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("managers.csv");
    std::fs::write(&table, "79161234567,101,From Table\n").expect("write table");
    let crm = fake_http_crm(&[("79161234567", "202", "From CRM"), ("79167777777", "203", "Only CRM")]).await;
    let table_entry = format!("[[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n", table.display().to_string());
    let http_entry = format!(
        "[[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\nname_field = \"client\"\n",
        crm.url("/lookup?phone={phone}")
    );

    let table_first = Forward::start(
        &config(&format!("[forward]\nbudget_ms = 5000\n{table_entry}{http_entry}")),
        Presence::new(),
        None,
    )
    .await;
    assert_eq!(table_first.phone("79161234567").await, "name=From%20Table&number=101");
    assert_eq!(crm.hits(), 0, "resolvers after the winner are not asked");
    assert_eq!(table_first.phone("79167777777").await, "name=Only%20CRM&number=203");

    let http_first = Forward::start(
        &config(&format!("[forward]\nbudget_ms = 5000\n{http_entry}{table_entry}")),
        Presence::new(),
        None,
    )
    .await;
    assert_eq!(http_first.phone("79161234567").await, "name=From%20CRM&number=202");
}
