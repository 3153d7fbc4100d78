//! Naming table between the official code and the paper (spec §3.4). Code names are used
//! everywhere else in this crate (they are the state-dict and output names); this is the only
//! place that maps them to the paper's terms.
//!
//! | code name  | paper term        | what it is                                                  |
//! |------------|-------------------|-------------------------------------------------------------|
//! | `hm`       | temporal branch   | Conv3d head on the patch-token map → B×1×T×h×w regression   |
//! | `temp_loc` | spatial branch    | per-frame head on the spatial-CLS residuals → B×T logits    |
//! | `cls`      | classification    | Linear on the normalised temp token → B×1 logit             |

/// `(code name, paper term)` pairs of the three heads.
pub const HEAD_NAMES: [(&str, &str); 3] = [
    ("hm", "temporal branch"),
    ("temp_loc", "spatial branch"),
    ("cls", "classification head"),
];

/// The paper's term for a head's code name.
pub fn paper_name(code: &str) -> Option<&'static str> {
    HEAD_NAMES.iter().find(|(c, _)| *c == code).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_map_to_paper_terms() {
        assert_eq!(paper_name("hm"), Some("temporal branch"));
        assert_eq!(paper_name("temp_loc"), Some("spatial branch"));
        assert_eq!(paper_name("spatial"), None);
        assert_eq!("clean".parse::<crate::Mode>().unwrap(), crate::Mode::Clean);
        assert!("fixed"
            .parse::<crate::Mode>()
            .unwrap_err()
            .to_string()
            .contains("fixed"));
    }
}
