//! A detection dataset's `data.yaml`, as Ultralytics writes it: the class names (a list, or a
//! map from index to name) and the split folders.
//!
//! ```yaml
//! path: ../datasets/shelves   # optional root of the paths below
//! train: images/train
//! val: images/val              # Roboflow writes ../valid/images
//! test: images/test            # optional
//! names: [cereal, soap]        # or {0: cereal, 1: soap}; nc, when given, must agree
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// The largest `data.yaml` read (the 1,203 names of LVIS take 20 KB).
pub const MAX_DATA_YAML_BYTES: u64 = 1 << 20;
/// The most classes a dataset may name.
pub const MAX_CLASSES: usize = 10_000;
/// The most bytes of names (LVIS's 1,203 take 15 KB): they are one table item, under
/// DynamoDB's 400 KB.
pub const MAX_NAMES_BYTES: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataYaml {
    pub names: Vec<String>,
    pub path: Option<String>,
    /// Image folders (or list files) of each split, as written.
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

#[derive(Deserialize)]
struct Raw {
    names: Option<Names>,
    nc: Option<u64>,
    path: Option<String>,
    train: Option<Paths>,
    val: Option<Paths>,
    test: Option<Paths>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Names {
    List(Vec<Scalar>),
    Map(BTreeMap<u64, Scalar>),
}

/// A name as YAML may type it: `names: [1, 2]` are the names "1" and "2".
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_name(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    fn into_vec(self) -> Vec<String> {
        match self {
            Paths::One(p) => vec![p],
            Paths::Many(p) => p,
        }
    }
}

/// Parses a `data.yaml`; `Err` says what is wrong with it and what it should hold.
pub fn parse_data_yaml(bytes: &[u8]) -> Result<DataYaml, String> {
    if bytes.len() as u64 > MAX_DATA_YAML_BYTES {
        return Err(format!("data.yaml is {} bytes, over the {MAX_DATA_YAML_BYTES}-byte limit", bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "data.yaml is not UTF-8 text".to_owned())?;
    let raw: Raw = yaml_serde::from_str(text)
        .map_err(|e| format!("data.yaml is not the YAML Ultralytics reads ({e}); it needs `names: [a, b, ...]`"))?;
    let names = match raw.names {
        None => return Err("data.yaml has no `names`; list the classes, in index order: `names: [a, b, ...]`".into()),
        Some(Names::List(list)) => list.into_iter().map(Scalar::into_name).collect::<Vec<_>>(),
        Some(Names::Map(map)) => {
            if map.keys().copied().ne(0..map.len() as u64) {
                return Err("data.yaml's `names` map must have the indices 0, 1, 2, ... with none missing".into());
            }
            map.into_values().map(Scalar::into_name).collect()
        }
    };
    if names.is_empty() || names.len() > MAX_CLASSES {
        return Err(format!("data.yaml names {} classes; a dataset has 1 to {MAX_CLASSES}", names.len()));
    }
    if let Some(nc) = raw.nc.filter(|nc| *nc != names.len() as u64) {
        return Err(format!("data.yaml says nc: {nc} but names {} classes", names.len()));
    }
    let total: usize = names.iter().map(String::len).sum();
    if total > MAX_NAMES_BYTES {
        return Err(format!("data.yaml's names take {total} bytes; at most {MAX_NAMES_BYTES} are kept"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(format!("class name {name:?} in data.yaml is empty, over 255 bytes or has control characters"));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("class name {name:?} appears twice in data.yaml's names"));
        }
    }
    Ok(DataYaml {
        names,
        path: raw.path,
        train: raw.train.map(Paths::into_vec).unwrap_or_default(),
        val: raw.val.map(Paths::into_vec).unwrap_or_default(),
        test: raw.test.map(Paths::into_vec).unwrap_or_default(),
    })
}

/// The `data.yaml` cvops writes into the raw bucket: the names, and the splits' image folders
/// relative to the dataset's prefix, so the prefix can be copied out and trained on as it is.
pub fn canonical_data_yaml(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| serde_json::to_string(n).expect("a string serialises")).collect();
    format!(
        "# Written by cvops: the class names, index 0 first, and the split folders under this prefix.\ntrain: images/train\nval: images/val\ntest: images/test\nnc: {}\nnames: [{}]\n",
        names.len(),
        quoted.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_as_a_list_or_an_index_map() {
        let list = parse_data_yaml(b"path: ../d\ntrain: images/train\nval: [images/val, more/val]\nnames: [cat, dog]\n").unwrap();
        assert_eq!(list.names, vec!["cat", "dog"]);
        assert_eq!((list.path.as_deref(), list.val.len()), (Some("../d"), 2));
        let map = parse_data_yaml(b"names:\n  0: person\n  1: bicycle\nnc: 2\n").unwrap();
        assert_eq!(map.names, vec!["person", "bicycle"]);
        let numbers = parse_data_yaml(b"names: [0, 1, 2]").unwrap();
        assert_eq!(numbers.names, vec!["0", "1", "2"]);
    }

    #[test]
    fn a_bad_data_yaml_says_what_to_fix() {
        for (text, says) in [
            ("train: images/train\n", "no `names`"),
            ("names: {0: a, 2: b}\n", "none missing"),
            ("names: [a, b]\nnc: 3\n", "nc: 3"),
            ("names: [a, a]\n", "twice"),
            ("names: []\n", "1 to"),
            ("names: [a\n", "YAML"),
            ("- just\n- a list\n", "YAML"),
        ] {
            let err = parse_data_yaml(text.as_bytes()).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        assert!(parse_data_yaml(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_canonical_form_reads_back_to_the_same_names() {
        let names = vec!["cat".to_owned(), "hot dog".into(), "a: b".into(), "\"q\"".into()];
        assert_eq!(parse_data_yaml(canonical_data_yaml(&names).as_bytes()).unwrap().names, names);
    }

    #[test]
    fn alias_bombs_are_refused_not_expanded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 { "a".to_owned() } else { format!("b{}", i - 1) };
            text.push_str(&format!(
                "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        text.push_str("names: [a]\n");
        // Either refused or read without expanding 10^13 nodes; never a hang.
        let _ = parse_data_yaml(text.as_bytes());
    }
}
