//! Fetching a manifest entry's image for training or evaluation: read within the byte limit,
//! checked against the manifest's hash, decoded downscaled.

use sha2::{Digest, Sha256};

use super::ManifestLine;
use crate::ports::{ObjectStore, ObjectStoreError};

/// One manifest entry fetched for training or evaluation.
#[derive(Debug)]
pub enum Sample {
    Image(ManifestLine, image::DynamicImage),
    /// Left out, with why: `missing` (the object is gone), `changed_since_snapshot` (its bytes no
    /// longer have the manifest's sha256), `undecodable`.
    Skipped(&'static str),
}

/// The short side, in pixels, of the images [`fetch_sample`] returns (smaller images come as they
/// are): more than any model input cvops evaluates on needs, and a bound on what an image in
/// flight holds (a 100-megapixel photo arrives as about 1.3 megapixels).
pub const SAMPLE_SHORT_SIDE: u32 = 1024;

/// Reads a manifest entry's object from `bucket`, checks it against the manifest's sha256 and
/// decodes it, downscaled to a short side of [`SAMPLE_SHORT_SIDE`] (while decoding, for a JPEG):
/// register-model's evaluation sees a snapshot as the trainer does, and neither holds a
/// full-size photo per image in flight.
pub async fn fetch_sample(
    objects: &dyn ObjectStore,
    bucket: &str,
    line: ManifestLine,
    limits: &crate::validate::ValidationLimits,
) -> Result<Sample, ObjectStoreError> {
    fetch_sample_downscaled(objects, bucket, line, limits, SAMPLE_SHORT_SIDE).await
}

/// [`fetch_sample`] with the short side the caller needs (the trainer's inputs are far smaller).
pub async fn fetch_sample_downscaled(
    objects: &dyn ObjectStore,
    bucket: &str,
    line: ManifestLine,
    limits: &crate::validate::ValidationLimits,
    short_side: u32,
) -> Result<Sample, ObjectStoreError> {
    let data = match objects.get(bucket, &line.key, limits.max_bytes).await {
        Ok(data) => data,
        Err(ObjectStoreError::NotFound { .. }) => return Ok(Sample::Skipped("missing")),
        Err(e) => return Err(e),
    };
    if hex::encode(Sha256::digest(&data)) != line.sha256 {
        return Ok(Sample::Skipped("changed_since_snapshot"));
    }
    Ok(match crate::validate::decode_image_downscaled(&data, limits, short_side) {
        Ok(image) => Sample::Image(line, image),
        Err(_) => Sample::Skipped("undecodable"),
    })
}
