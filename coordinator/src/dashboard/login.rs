//! The page served in place of any other when the request has no valid token: a field to type
//! the token into, once (the script keeps it in a cookie for this site), and what was wrong.
//! Also the page of a request that failed (an unknown job, a bad filter).

use axum::http::StatusCode;

use super::auth::Refusal;
use super::html::{self, Nav, escape};

/// The login page after `refusal`.
pub fn page(refusal: &Refusal) -> String {
    let class = if *refusal == Refusal::Wrong { "banner error" } else { "banner" };
    let body = format!(
        "<h1>Sign in</h1><p id=\"refusal\" class=\"{class}\" data-refusal=\"{kind}\">{message}.</p>\
         <form id=\"login\" class=\"login\"><label>Client token \
         <input id=\"token\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button>Open the dashboard</button></form>\
         <p class=\"muted\">The token is one of the coordinator's client tokens (<code>client_token</code> or \
         <code>tokens_file</code>), the one <code>shoal submit</code> uses. It is kept in a cookie for this site \
         only. A link ending in <code>#token=…</code> signs in at once.</p>",
        kind = if *refusal == Refusal::Wrong { "wrong" } else { "missing" },
        message = escape(refusal.message()),
    );
    html::page("Sign in", Nav::None, &[("page", "login")], &body)
}

/// The page of a request that failed.
pub fn problem(status: StatusCode, message: &str) -> String {
    let body = format!(
        "<h1>{}</h1><p class=\"banner error\">{}</p><p><a href=\"/\">All jobs</a></p>",
        status.canonical_reason().unwrap_or("Error"),
        escape(message)
    );
    html::page("Error", Nav::None, &[("page", "problem")], &body)
}
