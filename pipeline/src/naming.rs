//! Output naming: item ids become relative paths, so outputs do not depend on who wrote them.

use std::path::{Path, PathBuf};

/// `out/<id>.<ext>`, where `/` in the id makes sub-folders and any component that could escape
/// the output folder (`..`, empty, absolute) is replaced by `_`.
pub fn item_path(out: &Path, id: &str, ext: &str) -> PathBuf {
    let mut p = out.to_path_buf();
    let parts: Vec<&str> = id.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let clean: String = part
            .chars()
            .map(|c| if c.is_control() || c == '\\' { '_' } else { c })
            .collect();
        let clean = if clean.is_empty() || clean == "." || clean == ".." {
            "_".to_owned()
        } else {
            clean
        };
        if i + 1 == parts.len() {
            p.push(format!("{clean}.{ext}"));
        } else {
            p.push(clean);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::item_path;
    use std::path::Path;

    #[test]
    fn ids_map_to_paths_inside_the_output_folder() {
        let out = Path::new("/o");
        assert_eq!(
            item_path(out, "ff++/c23/original/000", "json"),
            Path::new("/o/ff++/c23/original/000.json")
        );
        assert_eq!(
            item_path(out, "../../etc/passwd", "json"),
            Path::new("/o/_/_/etc/passwd.json")
        );
        assert_eq!(item_path(out, "a//b", "x"), Path::new("/o/a/_/b.x"));
    }
}
