//! Humane byte sizes in configs: `64KiB`, `10 MiB`, `1GB` or a plain number
//! of bytes. Printed back as a plain number so every value round-trips.

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Bytes(u64),
    Text(String),
}

/// Parses `64KiB`, `10 MiB`, `1.5GB`, `4096`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{text}` is not a byte size like 64KiB or 10MiB ({e})"))
}

pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*value)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(t) => parse_bytes(&t).map_err(serde::de::Error::custom),
    }
}

/// The OpenAPI schema of a byte size: a number of bytes or a humane
/// string (`64KiB`, `10 MiB`).
#[cfg(feature = "openapi")]
pub struct ByteSize;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ByteSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[0-9]{1,12}(\.[0-9]{1,3})? ?([KMGT]i?B|B)?$"))
                    .examples(["64KiB"]),
            )
            .description(Some("Bytes: a number, or a size like `64KiB` or `10 MiB`"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ByteSize {}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn humane_sizes() {
        assert_eq!(parse_bytes("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_bytes("10 MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
    }
}
