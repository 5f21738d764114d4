//! The status page: one self-contained HTML document (no external script, style or
//! font, so it works on a closed network) that polls `/api/jobs` every second and
//! renders the job graph, per-stage figures and the checkpoint history.

/// The page served at `/`.
pub(crate) const PAGE: &str = include_str!("page.html");

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_is_self_contained_and_polls_the_api() {
        assert!(PAGE.starts_with("<!DOCTYPE html>"));
        assert!(PAGE.contains("fetch(\"api/jobs\""));
        for external in ["<link", "src=", "href=", "@import", "url("] {
            assert!(
                !PAGE.contains(external),
                "the page loads nothing from elsewhere ({external})"
            );
        }
    }
}
