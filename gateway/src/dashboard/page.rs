//! The dashboard page, assembled at compile time from `web/` into one
//! self-contained HTML document: the shared stylesheet (`web/style.css`,
//! which the load tester's report uses too), the vendored uPlot (MIT,
//! `web/vendor/uplot/`, version in its `VERSION` file), and the page's own
//! CSS and script. Nothing is fetched from elsewhere: the page works
//! offline, and its Content-Security-Policy (see `crate::http`'s
//! dashboard handler) only lets it talk to the server that served it.

/// The whole page.
pub const PAGE: &str = concat!(
    include_str!("../../../web/dashboard/head.html"),
    "<style>\n",
    include_str!("../../../web/style.css"),
    include_str!("../../../web/vendor/uplot/uPlot.min.css"),
    "\n",
    include_str!("../../../web/dashboard/dashboard.css"),
    "</style>\n</head>\n",
    include_str!("../../../web/dashboard/body.html"),
    "<script>\n",
    include_str!("../../../web/vendor/uplot/uPlot.iife.min.js"),
    "\n</script>\n<script>\n",
    include_str!("../../../web/dashboard/dashboard.js"),
    "</script>\n</body>\n</html>\n",
);

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
