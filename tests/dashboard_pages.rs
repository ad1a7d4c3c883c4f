//! The developers' web dashboard (`/dashboard`), driven over HTTP as a browser would (cookies
//! kept by hand, redirects not followed): sessions and sign-out, CSRF, the security headers of
//! every answer, escaping, tenancy, licences, the CSV export, the binary and the activity page.

mod common;

use common::{
    Backend, Fixture,
    gateway::{Http, TestStack, date_in, register_form},
};
use reqwest::{Method, redirect::Policy};

on_both_backends! {
    dashboard_sign_in_and_out => sign_in_and_out;
    dashboard_csrf => csrf;
    dashboard_escaping_and_tenancy => escaping_and_tenancy;
    dashboard_apps => apps;
    dashboard_licences => licences;
    dashboard_binary_and_activity => binary_and_activity;
    dashboard_sign_in_throttled_per_address => sign_in_throttled;
}

const HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
];

/// A browser without JavaScript: one cookie, no redirects followed, and every answer checked for
/// the dashboard's headers.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(stack: &TestStack) -> Browser {
        let http = reqwest::Client::builder().no_proxy().redirect(Policy::none()).build().expect("client");
        Browser { http, base: format!("http://{}", stack.addr), cookie: None }
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Http {
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body").to_vec();
        let reply = Http { status, headers, body };
        for (name, value) in HEADERS {
            assert_eq!(reply.header(name), Some(*value), "{name} on {reply}");
        }
        let text = reply.text();
        assert!(
            !text.contains("<script>") && !text.contains(" style="),
            "no inline script or style: {reply}"
        );
        reply
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    async fn get(&self, path: &str) -> Http {
        self.send(self.request(Method::GET, path)).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Http {
        self.send(self.request(Method::POST, path).form(fields)).await
    }

    /// POSTs a page's form with this session's CSRF token.
    async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Http {
        let csrf = self.csrf().await;
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    /// The CSRF token the apps page carries for this session.
    async fn csrf(&self) -> String {
        let page = self.get("/dashboard/apps").await;
        assert_eq!(page.status, 200, "{page}");
        attribute_after(&page.text(), "name=\"csrf\"", "value").expect("a csrf field")
    }

    /// Signs in; asserts the redirect and keeps the cookie.
    async fn sign_in(&mut self, username: &str, password: &str) {
        let reply = self.post("/dashboard/login", &[("username", username), ("password", password)]).await;
        assert_eq!(reply.status, 303, "{reply}");
        assert_eq!(reply.header("location"), Some("/dashboard/apps"));
        let set = reply.header("set-cookie").expect("a session cookie").to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        let pair = set.split(';').next().expect("name=value").to_owned();
        assert!(pair.starts_with("session=ses_"), "{set}");
        self.cookie = Some(pair);
    }

    async fn signed_in(stack: &TestStack, fx: &Fixture) -> Browser {
        let mut browser = Browser::new(stack);
        browser.sign_in(&fx.developer, &fx.password).await;
        browser
    }
}

/// The value of attribute `name` in the first tag at or after `marker`.
fn attribute_after(html: &str, marker: &str, name: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    let to = from + tag[from..].find('"')?;
    Some(tag[from..to].to_owned())
}

/// The text of the element with the given id (no nested markup expected).
fn text_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let open_end = at + html[at..].find('>')? + 1;
    let close = open_end + html[open_end..].find('<')?;
    Some(html[open_end..close].trim().to_owned())
}

/// Every value of `data-NAME="..."` in the page, in order.
fn data_values(html: &str, name: &str) -> Vec<String> {
    let key = format!("data-{name}=\"");
    html.match_indices(&key)
        .map(|(at, _)| {
            let from = at + key.len();
            html[from..from + html[from..].find('"').expect("closing quote")].to_owned()
        })
        .collect()
}

/// The `<tr ...>...</tr>` whose opening tag holds `marker` (which may start with `<tr`).
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html.find(marker).unwrap_or_else(|| panic!("a row with {marker}"));
    let start = html[..at + 3].rfind("<tr").expect("row start");
    let end = at + html[at..].find("</tr>").expect("row end");
    &html[start..end]
}

/// The text of the cell of class `class` in a row, markup inside it dropped.
fn cell(row: &str, class: &str) -> String {
    let at = row.find(&format!("class=\"{class}\"")).unwrap_or_else(|| panic!("cell {class} in {row}"));
    let open_end = at + row[at..].find('>').expect("cell tag") + 1;
    let close = open_end + row[open_end..].find("</td>").expect("cell end");
    let mut text = String::new();
    let mut in_tag = false;
    for c in row[open_end..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_owned()
}

fn h1(page: &Http) -> String {
    let text = page.text();
    let from = text.find("<h1").expect("an h1");
    let open_end = from + text[from..].find('>').expect("h1 tag") + 1;
    let close = open_end + text[open_end..].find("</h1>").expect("h1 end");
    text[open_end..close].trim().to_owned()
}

async fn sign_in_and_out(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dash-alice").await;
    let mut browser = Browser::new(&stack);

    // Signed out, every page sends the browser to the sign-in form.
    for path in ["/dashboard", "/dashboard/apps", &format!("/dashboard/apps/{}", fx.app_id)] {
        let reply = browser.get(path).await;
        assert_eq!(reply.status, 303, "{path}: {reply}");
        let expected = if path == "/dashboard" { "/dashboard/apps" } else { "/dashboard/login" };
        assert_eq!(reply.header("location"), Some(expected), "{path}");
    }
    let form = browser.get("/dashboard/login").await;
    assert_eq!(form.status, 200);
    assert_eq!(form.content_type(), Some("text/html; charset=utf-8"));
    let text = form.text();
    for part in ["<form id=\"login\"", "name=\"username\"", "name=\"password\"", "type=\"submit\"", "<nav"] {
        assert!(text.contains(part), "{part} in {text}");
    }

    // Wrong credentials: the form again, 401, no cookie.
    for (username, password) in [(fx.developer.as_str(), "wrong"), ("nobody-here", "whatever"), ("", "")] {
        let wrong = browser.post("/dashboard/login", &[("username", username), ("password", password)]).await;
        assert_eq!(wrong.status, 401, "{wrong}");
        assert!(wrong.header("set-cookie").is_none());
        assert!(wrong.text().contains("Wrong username or password."), "{wrong}");
        assert!(wrong.text().contains("<form id=\"login\""));
    }

    browser.sign_in(&fx.developer, &fx.password).await;
    let apps = browser.get("/dashboard/apps").await;
    assert_eq!((apps.status, h1(&apps).as_str()), (200, "Apps"), "{apps}");
    assert!(apps.text().contains("<form id=\"logout\""));

    // Signing out ends the session in the core: the old cookie no longer opens anything.
    let old = browser.cookie.clone();
    let out = browser.submit("/dashboard/logout", &[]).await;
    assert_eq!(out.status, 303, "{out}");
    assert_eq!(out.header("location"), Some("/dashboard/login"));
    assert!(out.header("set-cookie").expect("cleared").contains("Max-Age=0"));
    browser.cookie = old;
    let after = browser.get("/dashboard/apps").await;
    assert_eq!(after.status, 303, "{after}");
    assert_eq!(after.header("location"), Some("/dashboard/login"));
    let post = browser.post("/dashboard/apps", &[("csrf", "x"), ("name", "Nope")]).await;
    assert_eq!((post.status, h1(&post).as_str()), (403, "Forbidden"), "{post}");

    // Switched off, the gateway has no dashboard (and still its API).
    let off = TestStack::start_with(backend, |_| {}, |g| g.dashboard = false).await;
    let reply = Browser::new(&off).http.get(format!("http://{}/dashboard/login", off.addr)).send().await;
    assert_eq!(reply.expect("answer").status(), 404);
    off.stop().await;
    stack.stop().await;
}

async fn csrf(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dash-csrf").await;
    let browser = Browser::signed_in(&stack, &fx).await;
    let other = Browser::signed_in(&stack, &fx).await;
    let online = format!("/dashboard/apps/{}/online", fx.app_id);

    let refused = [
        browser.post(&online, &[("online", "0")]).await,
        browser.post(&online, &[("csrf", ""), ("online", "0")]).await,
        browser.post(&online, &[("csrf", &other.csrf().await), ("online", "0")]).await,
        browser.post(&online, &[("csrf", &browser.csrf().await[1..]), ("online", "0")]).await,
    ];
    for reply in &refused {
        assert_eq!((reply.status, h1(reply).as_str()), (403, "Forbidden"), "{reply}");
    }
    // A form of another site, or of another origin of this site, is refused even with the token.
    for site in ["cross-site", "same-site"] {
        let cross = browser
            .send(
                browser
                    .request(Method::POST, &online)
                    .header("sec-fetch-site", site)
                    .form(&[("csrf", browser.csrf().await.as_str()), ("online", "0")]),
            )
            .await;
        assert_eq!(cross.status, 403, "{site}");
    }
    // Sign-in from another origin of the same site (login CSRF) is refused too.
    let login = browser
        .send(
            browser
                .request(Method::POST, "/dashboard/login")
                .header("sec-fetch-site", "same-site")
                .form(&[("username", fx.developer.as_str()), ("password", fx.password.as_str())]),
        )
        .await;
    assert_eq!(login.status, 403);
    let page = browser.get(&format!("/dashboard/apps/{}", fx.app_id)).await;
    assert_eq!(text_of(&page.text(), "online-status").as_deref(), Some("online"), "nothing changed");

    // With its own token, the same form works.
    let done = browser.submit(&online, &[("online", "0")]).await;
    assert_eq!(done.status, 303, "{done}");
    assert_eq!(done.header("location"), Some(format!("/dashboard/apps/{}", fx.app_id).as_str()));
    let page = browser.get(&format!("/dashboard/apps/{}", fx.app_id)).await;
    assert_eq!(text_of(&page.text(), "online-status").as_deref(), Some("offline"));
    // A sign-out without the token is refused too, and leaves the session open.
    let out = browser.post("/dashboard/logout", &[]).await;
    assert_eq!(out.status, 403);
    assert_eq!(browser.get("/dashboard/apps").await.status, 200);
    stack.stop().await;
}

async fn escaping_and_tenancy(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dash-escape").await;
    let mallory = stack.fixture("dash-mallory").await;
    let nasty = "<script>alert(1)</script>";
    let reply = stack.client("register", register_form(&fx, nasty, "")).await;
    assert_eq!(reply.status, 200, "{reply}");
    let browser = Browser::signed_in(&stack, &fx).await;

    let users = browser.get(&format!("/dashboard/apps/{}/users", fx.app_id)).await;
    assert_eq!(users.status, 200, "{users}");
    let text = users.text();
    assert!(!text.contains(nasty), "the name is escaped: {text}");
    assert!(
        text.contains("&#60;script&#62;alert(1)&#60;/script&#62;") || text.contains("&lt;script&gt;"),
        "{text}"
    );
    // A search for it is escaped in the form and in the page links too.
    let search = browser.get(&format!("/dashboard/apps/{}/users?q=%3Cscript%3Ealert", fx.app_id)).await;
    assert!(!search.text().contains("<script>alert"), "{search}");
    let user_row = row(&search.text(), "data-user-id=").to_owned();
    assert!(cell(&user_row, "user-name").contains("alert(1)"));

    // An app named with markup is shown as text.
    let created =
        browser.submit("/dashboard/apps", &[("name", "<b>bold</b> & \"q\""), ("version", "1")]).await;
    assert_eq!(created.status, 303, "{created}");
    let apps = browser.get("/dashboard/apps").await;
    assert!(!apps.text().contains("<b>bold</b>"), "{apps}");

    // Another developer's app is not found, whatever the page or form; so is an app nobody has.
    for app in [mallory.app_id, 999_999] {
        for path in ["", "/licences", "/users", "/binary", "/activity", "/licences.csv"] {
            let page = browser.get(&format!("/dashboard/apps/{app}{path}")).await;
            assert_eq!((page.status, h1(&page).as_str()), (404, "Not found"), "{app}{path}: {page}");
            assert!(!page.text().contains(&mallory.secret));
        }
        let post = browser.submit(&format!("/dashboard/apps/{app}/online"), &[("online", "0")]).await;
        assert_eq!((post.status, h1(&post).as_str()), (404, "Not found"), "{post}");
    }
    for path in ["/dashboard/apps/0", "/dashboard/apps/-4", "/dashboard/apps/x", "/dashboard/nowhere"] {
        let page = browser.get(path).await;
        assert_eq!((page.status, h1(&page).as_str()), (404, "Not found"), "{path}");
    }
    // Mallory's app stayed online.
    let theirs = stack.admin(&mallory, "get_app_data", "").await.json();
    assert_eq!(theirs["online"], 1);
    stack.stop().await;
}

async fn apps(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dash-apps").await;
    let browser = Browser::signed_in(&stack, &fx).await;

    let list = browser.get("/dashboard/apps").await;
    let row_html = row(&list.text(), &format!("data-app-id=\"{}\"", fx.app_id)).to_owned();
    assert_eq!(cell(&row_html, "app-online"), "online");
    assert!(row_html.contains(&format!("href=\"/dashboard/apps/{}\"", fx.app_id)));
    assert!(!list.text().contains(&fx.secret), "no secret in the list");

    let created = browser.submit("/dashboard/apps", &[("name", "Second app"), ("version", "2.0")]).await;
    assert_eq!(created.status, 303, "{created}");
    let location = created.header("location").expect("location").to_owned();
    let new_id: i64 = location.strip_prefix("/dashboard/apps/").expect("app page").parse().expect("id");
    let page = browser.get(&location).await;
    let text = page.text();
    assert_eq!(text_of(&text, "app-name").as_deref(), Some("Second app"));
    assert_eq!(text_of(&text, "app-version").as_deref(), Some("2.0"));
    let secret = text_of(&text, "secret-value").expect("secret");
    assert_eq!(secret.len(), 64);
    assert!(text.contains("<details id=\"secret\">") && text.contains("Show secret"));
    let public_key = text_of(&text, "public-key").expect("public key");
    assert_eq!(data_values(&text, "kid").len(), 1);
    assert!(text.contains("class=\"key-state\">signing<"));

    // The legacy API sees the same app.
    let legacy = Fixture { secret: secret.clone(), app_id: new_id, public_key, ..fx.clone() };
    let data = stack.admin(&legacy, "get_app_data", "").await.json();
    assert_eq!((data["appname"].as_str(), data["version"].as_str()), (Some("Second app"), Some("2.0")));

    // Version, then the secret: refused without the box ticked, renewed with it.
    let path = format!("/dashboard/apps/{new_id}");
    assert_eq!(browser.submit(&format!("{path}/version"), &[("version", "2.1")]).await.status, 303);
    let unticked = browser.submit(&format!("{path}/renew-secret"), &[]).await;
    assert_eq!(unticked.status, 400, "{unticked}");
    assert!(unticked.text().contains("confirm"), "{unticked}");
    let empty = browser.submit(&format!("{path}/version"), &[("version", "")]).await;
    assert_eq!(empty.status, 400, "{empty}");
    assert_eq!(browser.submit(&format!("{path}/renew-secret"), &[("confirm", "1")]).await.status, 303);
    let page = browser.get(&path).await.text();
    assert_eq!(text_of(&page, "app-version").as_deref(), Some("2.1"));
    assert_ne!(text_of(&page, "secret-value").as_deref(), Some(secret.as_str()), "renewed");

    // Key rotation: publish a next key, promote it.
    assert_eq!(browser.submit(&format!("{path}/keys/add"), &[]).await.status, 303);
    let page = browser.get(&path).await.text();
    let kids = data_values(&page, "kid");
    assert_eq!(kids.len(), 2);
    assert_eq!(cell(row(&page, &format!("data-kid=\"{}\"", kids[1])), "key-state"), "next");
    assert_eq!(browser.submit(&format!("{path}/keys/promote"), &[("kid", &kids[1])]).await.status, 303);
    let page = browser.get(&path).await.text();
    assert_eq!(cell(row(&page, &format!("data-kid=\"{}\"", kids[1])), "key-state"), "signing");
    assert_eq!(cell(row(&page, &format!("data-kid=\"{}\"", kids[0])), "key-state"), "previous");
    stack.stop().await;
}

async fn licences(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dash-keys").await;
    let browser = Browser::signed_in(&stack, &fx).await;
    let base = format!("/dashboard/apps/{}/licences", fx.app_id);
    let expires = &date_in(30)[..10];

    let created = browser.submit(&base, &[("amount", "60"), ("access", "4"), ("expires", expires)]).await;
    assert_eq!(created.status, 303, "{created}");
    assert_eq!(created.header("location"), Some(base.as_str()));
    for (amount, access, day) in
        [("0", "1", expires), ("1", "10", expires), ("1", "1", "2001-01-01"), ("1", "1", "soon")]
    {
        let refused =
            browser.submit(&base, &[("amount", amount), ("access", access), ("expires", day)]).await;
        assert_eq!((refused.status, h1(&refused).as_str()), (400, "Bad request"), "{refused}");
        assert!(refused.text().contains("class=\"error\""));
    }

    // Fifty a page, then the rest through the next-page link.
    let first = browser.get(&base).await.text();
    let keys = data_values(&first, "key");
    assert_eq!(keys.len(), 50);
    let next =
        attribute_after(&first, "id=\"next-page\"", "href").expect("a next page").replace("&amp;", "&");
    let second = browser.get(&next).await.text();
    let rest = data_values(&second, "key");
    assert_eq!(rest.len(), 10);
    assert!(!second.contains("id=\"next-page\""));
    let all: Vec<String> = keys.iter().chain(&rest).cloned().collect();
    let legacy: Vec<String> =
        stack.licences(&fx).await.iter().map(|l| l["licence"].as_str().expect("key").to_owned()).collect();
    assert_eq!(all, legacy, "every key once, in order");
    let one = row(&first, &format!("data-key=\"{}\"", keys[0])).to_owned();
    assert_eq!(cell(&one, "licence-status"), "unused");
    assert_eq!(cell(&one, "licence-access"), "4");
    assert_eq!(cell(&one, "licence-expires"), format!("{expires} 23:59:59"));
    assert_eq!(cell(&one, "licence-user"), "");

    // Redeem one, ban another; the filters and the prefix search find them.
    stack.register_ok(&fx, "holder", &format!("licence={}", keys[1])).await;
    let banned = browser
        .submit(&format!("{base}/ban"), &[("key", &keys[2]), ("status", "unused"), ("after", "")])
        .await;
    assert_eq!(banned.status, 303, "{banned}");
    assert_eq!(banned.header("location"), Some(format!("{base}?status=unused").as_str()));
    let by_status = &browser;
    let listed = |status: &str| {
        let path = format!("{base}?status={status}");
        async move { data_values(&by_status.get(&path).await.text(), "key") }
    };
    assert_eq!(listed("banned").await, [keys[2].clone()]);
    assert_eq!(listed("active").await, [keys[1].clone()]);
    assert!(listed("expired").await.is_empty());
    let page = browser.get(&format!("{base}?status=all")).await.text();
    let held = row(&page, &format!("data-key=\"{}\"", keys[1])).to_owned();
    assert_eq!(
        (cell(&held, "licence-status"), cell(&held, "licence-user")),
        ("active".into(), "holder".into())
    );
    let ban_row = row(&page, &format!("data-key=\"{}\"", keys[2])).to_owned();
    assert_eq!(cell(&ban_row, "licence-status"), "banned");
    assert!(ban_row.contains("class=\"unban inline\"") && !ban_row.contains("class=\"ban inline\""));
    let prefix = &keys[3][..7].to_ascii_lowercase();
    let found = data_values(&browser.get(&format!("{base}?q={prefix}")).await.text(), "key");
    assert!(found.contains(&keys[3]) && found.iter().all(|k| k.starts_with(&keys[3][..7])), "{found:?}");
    let bad = browser.get(&format!("{base}?q=AB%25")).await;
    assert_eq!(bad.status, 400, "{bad}");

    // Unban and delete come back to the listing too.
    assert_eq!(browser.submit(&format!("{base}/unban"), &[("key", &keys[2])]).await.status, 303);
    assert!(listed("banned").await.is_empty());
    assert_eq!(browser.submit(&format!("{base}/delete"), &[("key", &keys[4])]).await.status, 303);
    assert_eq!(stack.licences(&fx).await.len(), 59);
    let missing = browser.submit(&format!("{base}/delete"), &[("key", &keys[4])]).await;
    assert!(missing.status == 400 || missing.status == 404, "{missing}");

    // The export: every licence, CSV, as an attachment.
    let csv = browser.get(&format!("{base}.csv")).await;
    assert_eq!(csv.status, 200, "{csv}");
    assert_eq!(csv.content_type(), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.header("content-disposition"), Some("attachment; filename=\"licences.csv\""));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "key,status,access,expires,user,created");
    assert_eq!(lines.len(), 60);
    let held_line = lines.iter().find(|l| l.starts_with(&keys[1])).expect("the held key");
    let fields: Vec<&str> = held_line.split(',').collect();
    assert_eq!(&fields[..5], [keys[1].as_str(), "active", "4", &format!("{expires} 23:59:59"), "holder"]);
    assert!(!text.contains(&keys[4]), "deleted keys are not exported");
    stack.stop().await;
}

async fn binary_and_activity(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dash-bin").await;
    let browser = Browser::signed_in(&stack, &fx).await;
    let path = format!("/dashboard/apps/{}/binary", fx.app_id);

    let page = browser.get(&path).await.text();
    assert!(page.contains("id=\"no-file\""));
    assert!(page.contains("<script src=\"/dashboard/static/upload.js\""));
    let form = &page[page.find("<form id=\"upload\"").expect("the upload form")..];
    assert!(form.starts_with(&format!(
        "<form id=\"upload\" method=\"post\" action=\"{path}\" enctype=\"multipart/form-data\">"
    )));
    let (csrf_at, file_at) =
        (form.find("name=\"csrf\"").expect("csrf"), form.find("name=\"file\"").expect("file"));
    assert!(csrf_at < file_at, "the token comes before the file");
    assert!(form.contains("<progress id=\"upload-progress\""));

    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let upload = |csrf: String| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf)
            .part("file", reqwest::multipart::Part::bytes(bytes.clone()).file_name("my app.bin"));
        browser.send(browser.request(Method::POST, &path).multipart(form))
    };
    let refused = upload("not-the-token".into()).await;
    assert_eq!(refused.status, 403, "{refused}");
    let anonymous = Browser::new(&stack);
    let form = reqwest::multipart::Form::new()
        .text("csrf", browser.csrf().await)
        .part("file", reqwest::multipart::Part::bytes(bytes.clone()).file_name("x.bin"));
    let signed_out = anonymous.send(anonymous.request(Method::POST, &path).multipart(form)).await;
    assert_eq!((signed_out.status, h1(&signed_out).as_str()), (403, "Forbidden"), "{signed_out}");
    assert!(browser.get(&path).await.text().contains("id=\"no-file\""), "nothing reached the core");
    let done = upload(browser.csrf().await).await;
    assert_eq!(done.status, 303, "{done}");
    assert_eq!(done.header("location"), Some(path.as_str()));
    let page = browser.get(&path).await.text();
    assert_eq!(text_of(&page, "file-name").as_deref(), Some("my app.bin"));
    assert_eq!(text_of(&page, "file-size").as_deref(), Some("300000"));
    assert_eq!(text_of(&page, "file-sha256"), Some(common::gateway::sha256_hex(&bytes)));
    assert!(text_of(&page, "file-uploaded").is_some_and(|t| t.len() == 19));

    // Activity: two users' heartbeats today, the other 29 days empty.
    for name in ["ann", "ben"] {
        stack.register_ok(&fx, name, "").await;
    }
    for name in ["ann", "ann", "ben"] {
        let reply = stack.client("connect", common::gateway::user_form(&fx, name, "")).await;
        assert_eq!(reply.status, 200, "{reply}");
    }
    let page = browser.get(&format!("/dashboard/apps/{}/activity", fx.app_id)).await.text();
    assert!(page.contains("<svg id=\"activity-chart\""));
    assert_eq!(page.matches("<rect class=\"heartbeats\"").count(), 30);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let bar_at = page.find("<rect class=\"heartbeats\"").expect("bars");
    let bars = &page[bar_at..];
    let bar = &bars[bars.find(&format!("data-day=\"{today}\"")).expect("today's bar")..];
    assert!(
        bar.starts_with(&format!("data-day=\"{today}\" data-heartbeats=\"3\" data-active-users=\"2\"")),
        "{bar}"
    );
    let line = row(&page, &format!("<tr data-day=\"{today}\"")).to_owned();
    assert_eq!((cell(&line, "heartbeats"), cell(&line, "active-users")), ("3".into(), "2".into()));

    // The stylesheet and the script are served from the binary.
    let css = browser.get("/dashboard/static/style.css").await;
    assert_eq!((css.status, css.content_type()), (200, Some("text/css; charset=utf-8")));
    let js = browser.get("/dashboard/static/upload.js").await;
    assert_eq!((js.status, js.content_type()), (200, Some("text/javascript; charset=utf-8")));
    assert!(js.text().contains("upload.onprogress"));
    stack.stop().await;
}

async fn sign_in_throttled(backend: Backend) {
    let stack = TestStack::trusting_loopback_proxy(backend, |c| c.settings.throttle.per_username = 2).await;
    let fx = stack.fixture("dash-throttle").await;
    let browser = Browser::new(&stack);
    let attempt = |address: &'static str, password: &'static str| {
        let request = browser
            .request(Method::POST, "/dashboard/login")
            .header("x-forwarded-for", address)
            .form(&[("username", fx.developer.as_str()), ("password", password)]);
        browser.send(request)
    };
    for _ in 0..2 {
        assert_eq!(attempt("203.0.113.7", "wrong").await.status, 401);
    }
    let limited = attempt("203.0.113.7", "wrong").await;
    assert_eq!(limited.status, 429, "{limited}");
    assert!(limited.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 0));
    // Counted per address: another client is not locked out.
    assert_eq!(attempt("203.0.113.8", "wrong").await.status, 401);
    let right = attempt("203.0.113.9", "dash-throttle-password").await;
    assert_eq!(right.status, 303, "{right}");
    stack.stop().await;
}
