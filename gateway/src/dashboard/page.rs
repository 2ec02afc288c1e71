//! The dashboard page, assembled at compile time from `web/` into one
//! self-contained HTML document: the shared stylesheet (`web/style.css`,
//! which the load tester's report uses too), the vendored uPlot (MIT,
//! `web/vendor/uplot/`, version in its `VERSION` file), and the page's own
//! CSS and script. Nothing is fetched from elsewhere: the page works
//! offline, and its Content-Security-Policy ([`policy`]) lets it run only
//! these scripts and talk only to the server that served it.

use std::sync::OnceLock;

/// The page's style sheet: the text of its one `<style>` element.
macro_rules! style {
    () => {
        concat!(
            "\n",
            include_str!("../../../web/style.css"),
            include_str!("../../../web/vendor/uplot/uPlot.min.css"),
            "\n",
            include_str!("../../../web/dashboard/dashboard.css"),
        )
    };
}

/// uPlot: the text of the first `<script>` element.
macro_rules! uplot {
    () => {
        concat!(
            "\n",
            include_str!("../../../web/vendor/uplot/uPlot.iife.min.js"),
            "\n"
        )
    };
}

/// The page's own script: the text of the second `<script>` element.
macro_rules! script {
    () => {
        concat!("\n", include_str!("../../../web/dashboard/dashboard.js"))
    };
}

/// The whole page.
pub const PAGE: &str = concat!(
    include_str!("../../../web/dashboard/head.html"),
    "<style>",
    style!(),
    "</style>\n</head>\n",
    include_str!("../../../web/dashboard/body.html"),
    "<script>",
    uplot!(),
    "</script>\n<script>",
    script!(),
    "</script>\n</body>\n</html>\n",
);

/// The page's Content-Security-Policy: its own two scripts and its style
/// sheet, each named by its SHA-256, and connections to the server that
/// served it; nothing else (no other origin, no frames, no form that
/// navigates, no inline code but these). Made once, on first use.
pub fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}' '{}'; style-src '{}'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256(uplot!()),
            sha256(script!()),
            sha256(style!()),
        )
    })
}

/// A CSP hash source: `sha256-` and the base64 of the text's SHA-256.
fn sha256(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// Self-contained: no script, style, image or font from another origin,
    /// and no `</script>` inside a script that would end it early.
    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        let lower = PAGE.to_ascii_lowercase();
        for needle in [
            "src=\"http",
            "src='http",
            "href=\"http",
            "href='http",
            "url(http",
            "url(\"http",
            "url('http",
            "@import",
            "//cdn",
        ] {
            assert!(!lower.contains(needle), "the page references {needle:?}");
        }
        // Two scripts: uPlot's and the page's, each closed once.
        assert_eq!(lower.matches("<script>").count(), 2);
        assert_eq!(lower.matches("</script>").count(), 2);
        assert!(PAGE.contains("uPlot v1.6.32") || PAGE.contains("(v1.6.32)"));
    }

    /// The policy names exactly the texts of the page's elements: each hash
    /// is of what sits between the tags.
    #[test]
    fn the_policy_hashes_the_inline_elements() {
        let between = |open: &str, close: &str, nth: usize| -> String {
            let start = PAGE.match_indices(open).nth(nth).unwrap().0 + open.len();
            let end = start + PAGE[start..].find(close).unwrap();
            PAGE[start..end].to_string()
        };
        let policy = super::policy();
        for text in [
            between("<script>", "</script>", 0),
            between("<script>", "</script>", 1),
            between("<style>", "</style>", 0),
        ] {
            assert!(policy.contains(&super::sha256(&text)), "{policy}");
        }
        assert!(!policy.contains("unsafe"));
        // A known vector: SHA-256 of "abc".
        assert_eq!(
            super::sha256("abc"),
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    /// The figures tests read have stable attributes.
    #[test]
    fn figures_carry_data_attributes() {
        for attr in [
            "data-metric=\"remaining\"",
            "data-metric=\"reserved\"",
            "data-metric=\"paid\"",
            "data-metric=\"state\"",
            "data-action=\"pause\"",
            "data-confirm=\"yes\"",
        ] {
            assert!(PAGE.contains(attr), "no {attr}");
        }
    }
}
