//! The raw bucket's key layout, parsed into validated types at the boundary.
//!
//! `datasets/<dataset>/<split>/<label>/<file>` or, without a split,
//! `datasets/<dataset>/<label>/<file>`; then the split is assigned from the content hash
//! ([`Split::from_sha256`]) so that identical bytes always land in the same split.
//!
//! A detection dataset is laid out as Ultralytics trains from it ([`RawKey`]):
//! `datasets/<dataset>/images/<split>/<file>`, its boxes in
//! `datasets/<dataset>/labels/<split>/<stem>.txt`, and the class names in
//! `datasets/<dataset>/data.yaml`. `images` and `labels` can never be a split, so the two layouts
//! never read one key two ways.

use serde::{Deserialize, Serialize};

use crate::reason::{ReasonCode, Rejection};

pub const DATASETS_PREFIX: &str = "datasets/";

/// A dataset name: 1 to 63 characters of `a-z 0-9 - _`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

impl DatasetName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok_first || !ok_rest || name.len() > 63 {
            return Err(format!(
                "dataset name {name:?} is invalid: use 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DatasetName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DatasetName> for String {
    fn from(value: DatasetName) -> Self {
        value.0
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split a folder names: `train`, `val` (or `valid`, as Roboflow's exports name it, or
    /// `validation`), `test`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// 80/10/10 from the first eight bytes of the content hash: a pure function of the bytes, so
    /// exact duplicates can never straddle splits, whatever key they were uploaded under.
    pub fn from_sha256(sha256: &[u8; 32]) -> Self {
        let mut head = [0u8; 8];
        head.copy_from_slice(&sha256[..8]);
        match u64::from_be_bytes(head) % 100 {
            0..=79 => Split::Train,
            80..=89 => Split::Val,
            _ => Split::Test,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a raw-bucket key is, by the layout it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawKey {
    /// A classified image: `datasets/<d>/[<split>/]<label>/<file>`.
    Image(ImageKey),
    /// An image whose objects are boxed: `datasets/<d>/images/<split>/<file>`.
    AnnotatedImage(AnnotatedKey),
    /// The boxes of the images with its stem: `datasets/<d>/labels/<split>/<stem>.txt`.
    Labels(AnnotatedKey),
    /// The class names of a detection dataset: `datasets/<d>/data.yaml`.
    ClassNames(DatasetName),
}

/// The name of the class-names object at the root of a detection dataset.
pub const CLASS_NAMES_FILE: &str = "data.yaml";

impl RawKey {
    /// Parses a decoded (not URL-encoded) object key.
    pub fn parse(key: &str) -> Result<Self, Rejection> {
        let Some(rest) = key.strip_prefix(DATASETS_PREFIX) else { return ImageKey::parse(key).map(RawKey::Image) };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [dataset, file] if *file == CLASS_NAMES_FILE => DatasetName::parse(dataset)
                .map(RawKey::ClassNames)
                .map_err(|e| Rejection::new(ReasonCode::BadKey, format!("key {key:?}: {e}"))),
            [dataset, kind @ ("images" | "labels"), folder, file] => {
                let bad = |why: String| {
                    Rejection::new(
                        ReasonCode::BadKey,
                        format!(
                            "key {key:?} {why}; boxed images go to datasets/<dataset>/images/<split>/<file>, their labels to datasets/<dataset>/labels/<split>/<stem>.txt (split: train, val (or valid, validation) or test)"
                        ),
                    )
                };
                let dataset = DatasetName::parse(dataset).map_err(&bad)?;
                let split = Split::parse(folder)
                    .ok_or_else(|| bad(format!("has {folder:?} where the split (train, val, valid, validation or test) goes")))?;
                check_segment(file, "file name").map_err(&bad)?;
                let annotated = AnnotatedKey { dataset, split, folder: (*folder).to_owned(), file: (*file).to_owned() };
                if *kind == "images" {
                    return Ok(RawKey::AnnotatedImage(annotated));
                }
                if !file.ends_with(".txt") || annotated.stem().is_empty() {
                    return Err(bad("is a label file without the .txt extension".into()));
                }
                Ok(RawKey::Labels(annotated))
            }
            _ => ImageKey::parse(key).map(RawKey::Image),
        }
    }

    pub fn dataset(&self) -> &DatasetName {
        match self {
            RawKey::Image(k) => &k.dataset,
            RawKey::AnnotatedImage(k) | RawKey::Labels(k) => &k.dataset,
            RawKey::ClassNames(d) => d,
        }
    }
}

/// A file name without its last extension (`a.b.jpg` is `a.b`): how an image finds its label
/// file, as Ultralytics finds it.
pub fn file_stem(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(stem, _)| stem)
}

/// A key of the detection layout: an image or a label file, under a split folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotatedKey {
    pub dataset: DatasetName,
    pub split: Split,
    /// The folder as written (`valid` stays `valid`): an image and its label file share it.
    pub folder: String,
    pub file: String,
}

impl AnnotatedKey {
    /// The file name without its last extension: what an image and its label file share.
    pub fn stem(&self) -> &str {
        file_stem(&self.file)
    }

    /// The key of the label file that holds this image's boxes, as Ultralytics finds it
    /// (`images/` becomes `labels/`, the extension `.txt`).
    pub fn labels_key(&self) -> String {
        format!("{DATASETS_PREFIX}{}/labels/{}/{}.txt", self.dataset, self.folder, self.stem())
    }
}

/// A raw-bucket key that follows the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageKey {
    pub dataset: DatasetName,
    /// `None` when the key has no split segment: one is then assigned from the content hash.
    pub split: Option<Split>,
    pub label: String,
    pub file: String,
}

impl ImageKey {
    /// Parses a decoded (not URL-encoded) object key.
    pub fn parse(key: &str) -> Result<Self, Rejection> {
        let bad = |why: &str| {
            Rejection::new(
                ReasonCode::BadKey,
                format!(
                    "key {key:?} {why}; upload to datasets/<dataset>/<split>/<label>/<file> or datasets/<dataset>/<label>/<file> (split: train, val (or valid, validation) or test); boxed images go to datasets/<dataset>/images/<split>/<file>"
                ),
            )
        };
        let rest = key.strip_prefix(DATASETS_PREFIX).ok_or_else(|| bad("is outside datasets/"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (dataset, split, label, file) = match parts.as_slice() {
            [d, l, f] => (*d, None, *l, *f),
            [d, s, l, f] => {
                let split = Split::parse(s)
                    .ok_or_else(|| bad(&format!("has {s:?} where the split (train, val, valid, validation or test) goes")))?;
                (*d, Some(split), *l, *f)
            }
            _ => return Err(bad("has the wrong number of path segments")),
        };
        let dataset = DatasetName::parse(dataset).map_err(|e| bad(&e))?;
        check_segment(label, "label").map_err(|e| bad(&e))?;
        check_segment(file, "file name").map_err(|e| bad(&e))?;
        Ok(Self { dataset, split, label: label.to_owned(), file: file.to_owned() })
    }

    /// The dataset a key names, even when the rest of the key is bad: rejected uploads are filed
    /// under it so that `cvops images --dataset D --status rejected` finds them.
    pub fn dataset_of(key: &str) -> Option<DatasetName> {
        let rest = key.strip_prefix(DATASETS_PREFIX)?;
        DatasetName::parse(rest.split('/').next()?).ok()
    }
}

fn check_segment(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("has an empty {what}"));
    }
    if s.starts_with('.') {
        return Err(format!("has a {what} starting with '.'"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("has a control character in the {what}"));
    }
    if s.len() > 255 {
        return Err(format!("has a {what} longer than 255 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_keys_follow_the_ultralytics_layout() {
        let RawKey::AnnotatedImage(image) = RawKey::parse("datasets/shelves/images/valid/a.b.jpg").unwrap() else { panic!() };
        assert_eq!((image.split, image.folder.as_str(), image.stem()), (Split::Val, "valid", "a.b"));
        assert_eq!(image.labels_key(), "datasets/shelves/labels/valid/a.b.txt");
        let RawKey::Labels(labels) = RawKey::parse("datasets/shelves/labels/valid/a.b.txt").unwrap() else { panic!() };
        assert_eq!((labels.stem(), labels.folder.as_str()), ("a.b", "valid"));
        assert_eq!(
            RawKey::parse("datasets/shelves/data.yaml").unwrap(),
            RawKey::ClassNames(DatasetName::parse("shelves").unwrap())
        );
        assert!(matches!(RawKey::parse("datasets/pets/train/cat/a.jpg").unwrap(), RawKey::Image(_)));
        assert!(matches!(RawKey::parse("datasets/pets/images/a.jpg").unwrap(), RawKey::Image(k) if k.label == "images"));
        for bad in
            ["datasets/s/labels/train/a.json", "datasets/s/images/holdout/a.jpg", "datasets/s/labels/train/.txt", "data.yaml"]
        {
            assert_eq!(RawKey::parse(bad).unwrap_err().reason, ReasonCode::BadKey, "{bad}");
        }
    }

    #[test]
    fn a_key_with_a_split_parses_into_its_parts() {
        let k = ImageKey::parse("datasets/digits/train/7/img 01é.png").unwrap();
        assert_eq!(k.dataset.as_str(), "digits");
        assert_eq!(k.split, Some(Split::Train));
        assert_eq!((k.label.as_str(), k.file.as_str()), ("7", "img 01é.png"));
    }

    #[test]
    fn valid_and_validation_folders_are_the_val_split() {
        for folder in ["val", "valid", "validation"] {
            let k = ImageKey::parse(&format!("datasets/pets/{folder}/cat/a.jpg")).unwrap();
            assert_eq!((k.split, k.label.as_str()), (Some(Split::Val), "cat"), "{folder}");
        }
        assert_eq!(ImageKey::parse("datasets/pets/dev/cat/a.jpg").unwrap_err().reason, ReasonCode::BadKey);
    }

    #[test]
    fn a_key_without_a_split_leaves_it_to_the_hash() {
        let k = ImageKey::parse("datasets/cats/tabby/a.jpg").unwrap();
        assert_eq!(k.split, None);
        assert_eq!(k.label, "tabby");
    }

    #[test]
    fn keys_outside_the_layout_are_bad_keys() {
        for key in [
            "a.jpg",
            "datasets/x.jpg",
            "datasets/ds/a.jpg",
            "datasets/ds/holdout/cat/a.jpg",
            "datasets/ds/train/cat/extra/a.jpg",
            "datasets/Bad Name/cat/a.jpg",
            "datasets/ds//a.jpg",
            "datasets/ds/cat/.hidden",
        ] {
            let err = ImageKey::parse(key).unwrap_err();
            assert_eq!(err.reason, ReasonCode::BadKey, "{key}");
            assert!(err.message.contains("datasets/<dataset>"), "{}", err.message);
        }
        assert_eq!(ImageKey::dataset_of("datasets/ds/holdout/cat/a.jpg").unwrap().as_str(), "ds");
        assert_eq!(ImageKey::dataset_of("a.jpg"), None);
    }

    #[test]
    fn the_hash_split_is_roughly_80_10_10() {
        use sha2::{Digest, Sha256};
        let mut counts = [0usize; 3];
        for i in 0..10_000u32 {
            let h: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            counts[Split::from_sha256(&h) as usize] += 1;
        }
        assert!((7_700..8_300).contains(&counts[0]), "{counts:?}");
        assert!((800..1_200).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
    }
}

/// What S3 leaves unencoded in event keys; a space becomes `+`.
const EVENT_KEY_ENCODE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b' ');

/// Encodes an object key as S3 writes it into event notifications: what the local router sends.
pub fn encode_event_key(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, EVENT_KEY_ENCODE).to_string().replace(' ', "+")
}

/// Decodes an object key as S3 writes it into event notifications (form encoding: `+` is a
/// space, `%xx` are UTF-8 bytes); `None` when the bytes are not UTF-8.
pub fn decode_event_key(encoded: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&encoded.replace('+', " ")).decode_utf8().ok().map(|key| key.into_owned())
}

#[cfg(test)]
mod event_key_tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_s3_encodes_them_and_decode_back() {
        let encoded = encode_event_key("datasets/d/train/7/my digit été #1.png");
        assert_eq!(encoded, "datasets/d/train/7/my+digit+%C3%A9t%C3%A9+%231.png");
        assert_eq!(decode_event_key(&encode_event_key("a b+c/ü")).as_deref(), Some("a b+c/ü"));
        assert_eq!(decode_event_key("bad%FF"), None);
    }
}
