//! The `ToJson` conversion from decoded k8s-pb messages to Kubernetes JSON.
//!
//! Kubernetes writes protobuf with gogo-protobuf in proto2 style: every non-pointer Go field is
//! written even when it holds its zero value, and a pointer field only when it is non-nil. The
//! wire therefore says "written" or "not written", never "omitted in JSON", and the Go json
//! tags decide what a written zero means. The rule applied here, field by field:
//!
//! * `#[keep]` fields are Go pointers (`*int32`, `*bool`, `*string`, `*IntOrString`) or fields
//!   whose json tag has no `omitempty`. They are emitted whenever written, zero included
//!   (`replicas: 0`, `storageClassName: ""`, `containerPort: 0`), as `encoding/json` would.
//! * Every other scalar field is a non-pointer `omitempty` field: a written zero (`""`, `0`,
//!   `false`, an `IntOrString` of `0` or `""`) is dropped, as `encoding/json` would drop it, so
//!   that server-side defaulting sees an absent field.
//! * Empty lists and maps are always dropped (Go writes nil ones as absent or `null`).
//! * A zero `Time` / `MicroTime` (an empty message, or seconds and nanos both 0) is dropped,
//!   because Go writes it as `null`.
//! * An embedded message is emitted whenever written, even when empty (`"status": {}`), as Go
//!   does for non-pointer structs.
//!
//! The `#[keep]` markers in the listings were taken from the json tags and field types of
//! `k8s.io/api` and `k8s.io/apimachinery` v0.33, the protobuf schema k8s-pb 0.7 was built from.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

use super::ProtobufError;

/// A k8s-pb value that has a Kubernetes JSON form.
pub(super) trait ToJson {
    /// The JSON form of the value; `Value::Null` means "leave the field out".
    fn to_json(&self) -> Result<Value, ProtobufError>;

    /// Whether this is the Go zero value, which a non-pointer `omitempty` field leaves out.
    fn is_zero(&self) -> bool {
        false
    }
}

/// How a written scalar is treated when it holds its zero value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    /// A non-pointer `omitempty` Go field: a zero value is left out.
    OmitZero,
    /// A Go pointer, or a field without `omitempty`: written means emitted.
    Keep,
}

/// The shapes prost gives a field: proto2 optional, repeated and map.
pub(super) trait Field {
    /// The JSON value of the field, or `None` when it must be left out.
    fn field_json(&self, presence: Presence) -> Result<Option<Value>, ProtobufError>;
}

impl<T: ToJson> Field for Option<T> {
    fn field_json(&self, presence: Presence) -> Result<Option<Value>, ProtobufError> {
        let Some(value) = self else { return Ok(None) };
        if presence == Presence::OmitZero && value.is_zero() {
            return Ok(None);
        }
        let json = value.to_json()?;
        Ok((!json.is_null()).then_some(json))
    }
}

impl<T: ToJson> Field for Vec<T> {
    fn field_json(&self, _: Presence) -> Result<Option<Value>, ProtobufError> {
        if self.is_empty() {
            return Ok(None);
        }
        let items = self.iter().map(ToJson::to_json).collect::<Result<_, _>>()?;
        Ok(Some(Value::Array(items)))
    }
}

impl<T: ToJson> Field for BTreeMap<String, T> {
    fn field_json(&self, _: Presence) -> Result<Option<Value>, ProtobufError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut entries = Map::with_capacity(self.len());
        for (key, value) in self {
            entries.insert(key.clone(), value.to_json()?);
        }
        Ok(Some(Value::Object(entries)))
    }
}

/// Adds one field to `out` under its JSON name, following the presence rule.
pub(super) fn put(
    out: &mut Map<String, Value>,
    name: &str,
    field: &impl Field,
    presence: Presence,
) -> Result<(), ProtobufError> {
    if let Some(json) = field.field_json(presence)? {
        out.insert(name.to_owned(), json);
    }
    Ok(())
}

/// Merges the fields of a Go struct embedded with `json:",inline"` into `out`.
pub(super) fn flatten<T: ToJson>(
    out: &mut Map<String, Value>,
    embedded: &Option<T>,
) -> Result<(), ProtobufError> {
    if let Some(embedded) = embedded {
        if let Value::Object(fields) = embedded.to_json()? {
            out.extend(fields);
        }
    }
    Ok(())
}

/// Implements [`ToJson`] for k8s-pb messages from a listing of their fields.
///
/// Each field is `rust_name: "jsonName"`, optionally preceded by `#[keep]` (see the module
/// docs), or `#[flatten] rust_name` for a Go struct embedded inline. The generated code
/// destructures the message without `..`, so a field that k8s-pb gains and the listing lacks
/// is a compile error rather than silently dropped data.
macro_rules! to_json {
    ($($ty:path { $($(#[$mode:ident])? $field:ident $(: $name:literal)?),* $(,)? })*) => {$(
        impl super::convert::ToJson for $ty {
            fn to_json(
                &self,
            ) -> Result<serde_json::Value, super::ProtobufError> {
                let Self { $($field),* } = self;
                let mut out = serde_json::Map::new();
                $(super::convert::field!(
                    out, $field, [$($name)?] [$($mode)?]
                );)*
                Ok(serde_json::Value::Object(out))
            }
        }
    )*};
}

/// One field of a [`to_json!`] listing.
macro_rules! field {
    ($out:ident, $value:ident, [$name:literal] []) => {
        super::convert::put(&mut $out, $name, $value, super::convert::Presence::OmitZero)?
    };
    ($out:ident, $value:ident, [$name:literal] [keep]) => {
        super::convert::put(&mut $out, $name, $value, super::convert::Presence::Keep)?
    };
    ($out:ident, $value:ident, [] [flatten]) => {
        super::convert::flatten(&mut $out, $value)?
    };
}

pub(super) use {field, to_json};

impl ToJson for String {
    fn to_json(&self) -> Result<Value, ProtobufError> {
        Ok(Value::String(self.clone()))
    }

    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Result<Value, ProtobufError> {
        Ok(Value::Bool(*self))
    }

    fn is_zero(&self) -> bool {
        !*self
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Result<Value, ProtobufError> {
        Ok(Value::from(*self))
    }

    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Result<Value, ProtobufError> {
        Ok(Value::from(*self))
    }

    fn is_zero(&self) -> bool {
        *self == 0
    }
}

/// Protobuf `bytes` (Secret `data`, ConfigMap `binaryData`): standard base64 in JSON.
impl ToJson for Vec<u8> {
    fn to_json(&self) -> Result<Value, ProtobufError> {
        Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(self),
        ))
    }

    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for Time {
    /// RFC 3339 in UTC with whole seconds, as `metav1.Time` marshals.
    fn to_json(&self) -> Result<Value, ProtobufError> {
        timestamp(self.seconds, self.nanos, false, "Time")
    }

    fn is_zero(&self) -> bool {
        is_zero_instant(self.seconds, self.nanos)
    }
}

impl ToJson for MicroTime {
    /// RFC 3339 in UTC with six fractional digits, as `metav1.MicroTime` marshals.
    fn to_json(&self) -> Result<Value, ProtobufError> {
        timestamp(self.seconds, self.nanos, true, "MicroTime")
    }

    fn is_zero(&self) -> bool {
        is_zero_instant(self.seconds, self.nanos)
    }
}

impl ToJson for IntOrString {
    /// A JSON number for type 0 (Int), a JSON string for type 1 (String).
    fn to_json(&self) -> Result<Value, ProtobufError> {
        match self.r#type.unwrap_or(0) {
            0 => Ok(Value::from(self.int_val.unwrap_or(0))),
            1 => Ok(Value::String(self.str_val.clone().unwrap_or_default())),
            other => Err(ProtobufError::InvalidValue {
                type_name: "IntOrString",
                reason: format!("type is {other}, expected 0 (int) or 1 (string)"),
            }),
        }
    }

    fn is_zero(&self) -> bool {
        match self.r#type.unwrap_or(0) {
            0 => self.int_val.unwrap_or(0) == 0,
            1 => self.str_val.as_deref().unwrap_or_default().is_empty(),
            _ => false,
        }
    }
}

impl ToJson for Quantity {
    /// The quantity's string form; the server parses and validates it like any JSON quantity.
    fn to_json(&self) -> Result<Value, ProtobufError> {
        Ok(Value::String(self.string.clone().unwrap_or_default()))
    }
}

impl ToJson for FieldsV1 {
    /// `raw` holds the JSON document of the managed-fields set; it is embedded as is.
    fn to_json(&self) -> Result<Value, ProtobufError> {
        match self.raw.as_deref() {
            None | Some([]) => Ok(Value::Null),
            Some(raw) => serde_json::from_slice(raw).map_err(|err| ProtobufError::InvalidValue {
                type_name: "FieldsV1",
                reason: format!("raw is not json: {err}"),
            }),
        }
    }
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years RFC 3339 can write.
const MIN_SECONDS: i64 = -62_167_219_200;
const MAX_SECONDS: i64 = 253_402_300_799;

fn is_zero_instant(seconds: Option<i64>, nanos: Option<i32>) -> bool {
    seconds.unwrap_or(0) == 0 && nanos.unwrap_or(0) == 0
}

/// Formats a protobuf `{seconds, nanos}` instant; nanos outside 0..1e9 carry into seconds,
/// as Go's `time.Unix` does. The zero instant is `null`, Go's JSON for an unset time.
fn timestamp(
    seconds: Option<i64>,
    nanos: Option<i32>,
    micros: bool,
    type_name: &'static str,
) -> Result<Value, ProtobufError> {
    if is_zero_instant(seconds, nanos) {
        return Ok(Value::Null);
    }
    let total =
        i128::from(seconds.unwrap_or(0)) * NANOS_PER_SECOND + i128::from(nanos.unwrap_or(0));
    let whole = total.div_euclid(NANOS_PER_SECOND);
    let fraction = total.rem_euclid(NANOS_PER_SECOND);
    let whole = i64::try_from(whole)
        .ok()
        .filter(|s| (MIN_SECONDS..=MAX_SECONDS).contains(s))
        .ok_or_else(|| ProtobufError::InvalidValue {
            type_name,
            reason: format!("{whole} seconds is outside the years 0000 to 9999"),
        })?;
    let (year, month, day) = civil_from_days(whole.div_euclid(SECONDS_PER_DAY));
    let of_day = whole.rem_euclid(SECONDS_PER_DAY);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if micros {
        text.push_str(&format!(".{:06}", fraction / 1000));
    }
    text.push('Z');
    Ok(Value::String(text))
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01, computed over
/// 400-year eras counted from 0000-03-01 so that the leap day ends each era's years.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    const DAYS_PER_ERA: i64 = 146_097;
    let since_0000_03_01 = days + 719_468;
    let era = since_0000_03_01.div_euclid(DAYS_PER_ERA);
    let day_of_era = since_0000_03_01.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: Option<i64>, nanos: Option<i32>) -> Result<Value, ProtobufError> {
        Time { seconds, nanos }.to_json()
    }

    #[test]
    fn times_format_as_rfc3339_in_utc() {
        let cases = [
            (1, "1970-01-01T00:00:01Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_735_689_599, "2024-12-31T23:59:59Z"),
            (1_764_427_876, "2025-11-29T14:51:16Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (MIN_SECONDS, "0000-01-01T00:00:00Z"),
            (MAX_SECONDS, "9999-12-31T23:59:59Z"),
        ];
        for (seconds, want) in cases {
            assert_eq!(time(Some(seconds), Some(0)).ok(), Some(Value::from(want)));
        }
    }

    #[test]
    fn zero_and_empty_times_are_null() {
        assert_eq!(time(None, None).ok(), Some(Value::Null));
        assert_eq!(time(Some(0), Some(0)).ok(), Some(Value::Null));
        assert!(Time::default().is_zero());
        assert!(!Time {
            seconds: Some(5),
            nanos: None
        }
        .is_zero());
    }

    #[test]
    fn time_drops_fraction_and_micro_time_keeps_microseconds() {
        assert_eq!(
            time(Some(1_700_000_000), Some(999_999_999)).ok(),
            Some(Value::from("2023-11-14T22:13:20Z"))
        );
        let micro = MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        };
        assert_eq!(
            micro.to_json().ok(),
            Some(Value::from("2023-11-14T22:13:20.123456Z"))
        );
        let carried = MicroTime {
            seconds: Some(0),
            nanos: Some(1_500_000_000),
        };
        assert_eq!(
            carried.to_json().ok(),
            Some(Value::from("1970-01-01T00:00:01.500000Z"))
        );
    }

    #[test]
    fn times_outside_four_digit_years_are_rejected() {
        let cases = [
            (MAX_SECONDS + 1, 0),
            (MIN_SECONDS - 1, 0),
            (MAX_SECONDS, 1_000_000_000),
            (i64::MAX, i32::MAX),
            (i64::MIN, i32::MIN),
        ];
        for (seconds, nanos) in cases {
            let err = time(Some(seconds), Some(nanos));
            assert!(matches!(
                err,
                Err(ProtobufError::InvalidValue {
                    type_name: "Time",
                    ..
                })
            ));
        }
    }

    #[test]
    fn int_or_string_follows_its_type() {
        let int = IntOrString {
            r#type: Some(0),
            int_val: Some(8080),
            str_val: Some(String::new()),
        };
        assert_eq!(int.to_json().ok(), Some(Value::from(8080)));
        let string = IntOrString {
            r#type: Some(1),
            int_val: Some(0),
            str_val: Some("http".into()),
        };
        assert_eq!(string.to_json().ok(), Some(Value::from("http")));
        assert!(IntOrString {
            r#type: Some(1),
            ..Default::default()
        }
        .is_zero());
        assert!(!int.is_zero());
        let bad = IntOrString {
            r#type: Some(7),
            ..Default::default()
        };
        assert!(matches!(
            bad.to_json(),
            Err(ProtobufError::InvalidValue { .. })
        ));
    }

    #[test]
    fn presence_rule_drops_only_omitempty_zeros_and_empty_collections() {
        let zero = Some(0_i32);
        assert_eq!(zero.field_json(Presence::OmitZero).ok(), Some(None));
        assert_eq!(
            zero.field_json(Presence::Keep).ok(),
            Some(Some(Value::from(0)))
        );
        assert_eq!(
            Some(String::new()).field_json(Presence::Keep).ok(),
            Some(Some(Value::from("")))
        );
        assert_eq!(
            Some(Time::default()).field_json(Presence::Keep).ok(),
            Some(None)
        );
        assert_eq!(
            Vec::<String>::new().field_json(Presence::Keep).ok(),
            Some(None)
        );
        let map = BTreeMap::from([("k".to_owned(), String::new())]);
        assert_eq!(
            map.field_json(Presence::OmitZero).ok(),
            Some(Some(serde_json::json!({"k": ""})))
        );
    }

    #[test]
    fn fields_v1_embeds_json_and_rejects_other_bytes() {
        let fields = FieldsV1 {
            raw: Some(br#"{"f:data":{}}"#.to_vec()),
        };
        assert_eq!(
            fields.to_json().ok(),
            Some(serde_json::json!({"f:data": {}}))
        );
        let bad = FieldsV1 {
            raw: Some(vec![0xff, 0x00]),
        };
        assert!(matches!(
            bad.to_json(),
            Err(ProtobufError::InvalidValue { .. })
        ));
    }
}
