//! The top-level fields of a request object, read in one pass without building a
//! `serde_json::Value`: every request field the protocol knows gets a slot, and string values
//! borrow from the line when they contain no escapes. Fields the protocol does not know are
//! still parsed (into a `Value`, then dropped), so a line is accepted or refused exactly as a
//! full parse would, only cheaper: a `say` costs two string copies instead of a map with eight.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The request fields with a slot, in slot order.
const KNOWN: [&str; 20] = [
    "type",
    "id",
    "nick",
    "protocol",
    "client",
    "password",
    "room",
    "text",
    "to",
    "status",
    "topic",
    "before",
    "after",
    "limit",
    "reason",
    "secret",
    "key",
    "invite_only",
    "topic_lock",
    "autojoin",
];

/// A field's value, as much of it as a request decoder needs to know.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum Raw<'a> {
    /// Not present in the object.
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    Bool(bool),
    /// Anything else: a fraction, an array or an object.
    Other,
}

/// A parsed line: a JSON object (its known fields) or some other JSON value.
// Lives on the stack for the length of one decode; boxing the object would cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum RawFrame<'a> {
    Object(RawObject<'a>),
    NotObject,
}

#[derive(Debug, Default)]
pub(crate) struct RawObject<'a> {
    slots: [Raw<'a>; KNOWN.len()],
}

impl<'a> RawObject<'a> {
    /// Take a known field out of the object; `Raw::Absent` if it was not there (or taken).
    pub(crate) fn take(&mut self, field: &str) -> Raw<'a> {
        match KNOWN.iter().position(|k| *k == field) {
            Some(i) => std::mem::take(&mut self.slots[i]),
            None => {
                debug_assert!(false, "`{field}` has no slot");
                Raw::Absent
            }
        }
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::UInt(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Raw<'de>, E> {
        Ok(match u64::try_from(n) {
            Ok(u) => Raw::UInt(u),
            Err(_) => Raw::Int(n),
        })
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Other)
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Raw<'de>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Raw::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw<'de>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Raw::Other)
    }
}

impl<'de> Deserialize<'de> for RawFrame<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFrame<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFrame<'de>, A::Error> {
                let mut obj = RawObject::default();
                // Keys come through the same visitor as values (a JSON key is always a string).
                while let Some(key) = map.next_key::<Raw<'de>>()? {
                    let Raw::Str(key) = key else {
                        return Err(de::Error::custom("object key is not a string"));
                    };
                    match KNOWN.iter().position(|k| *k == key) {
                        // A repeated key: the last one counts, as in a full parse.
                        Some(i) => obj.slots[i] = map.next_value::<Raw<'de>>()?,
                        None => {
                            map.next_value::<Value>()?;
                        }
                    }
                }
                Ok(RawFrame::Object(obj))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawFrame<'de>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(RawFrame::NotObject)
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawFrame<'de>, E> {
                Ok(RawFrame::NotObject)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawFrame<'de>, E> {
                Ok(RawFrame::NotObject)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawFrame<'de>, E> {
                Ok(RawFrame::NotObject)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawFrame<'de>, E> {
                Ok(RawFrame::NotObject)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawFrame<'de>, E> {
                Ok(RawFrame::NotObject)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawFrame<'de>, E> {
                Ok(RawFrame::NotObject)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(line: &str) -> RawObject<'_> {
        match serde_json::from_str::<RawFrame>(line).unwrap() {
            RawFrame::Object(o) => o,
            RawFrame::NotObject => panic!("not an object: {line}"),
        }
    }

    #[test]
    fn known_fields_borrow_unless_escaped() {
        let mut o = object(r#"{"type":"say","room":"lobby","text":"a\nb","id":-3,"limit":7}"#);
        assert_eq!(o.take("type"), Raw::Str(Cow::Borrowed("say")));
        assert!(matches!(o.take("room"), Raw::Str(Cow::Borrowed("lobby"))));
        assert!(matches!(o.take("text"), Raw::Str(Cow::Owned(t)) if t == "a\nb"));
        assert_eq!(o.take("id"), Raw::Int(-3));
        assert_eq!(o.take("limit"), Raw::UInt(7));
        assert_eq!(o.take("limit"), Raw::Absent, "taken");
        assert_eq!(o.take("nick"), Raw::Absent);
    }

    #[test]
    fn values_of_every_kind() {
        let mut o = object(
            r#"{"to":null,"nick":true,"room":1.5,"text":[1,{"a":2}],"topic":{"x":[]},"extra":{"deep":[null]}}"#,
        );
        assert_eq!(o.take("to"), Raw::Null);
        assert_eq!(o.take("nick"), Raw::Bool(true));
        assert_eq!(o.take("room"), Raw::Other);
        assert_eq!(o.take("text"), Raw::Other);
        assert_eq!(o.take("topic"), Raw::Other);
    }

    #[test]
    fn the_last_of_a_repeated_key_counts() {
        let mut o = object(r#"{"room":"a","room":"b"}"#);
        assert_eq!(o.take("room"), Raw::Str(Cow::Borrowed("b")));
    }

    #[test]
    fn other_values_and_broken_json() {
        for line in ["[1,2]", "null", "true", "3", "-3", "2.5", "\"s\""] {
            assert!(matches!(
                serde_json::from_str::<RawFrame>(line),
                Ok(RawFrame::NotObject)
            ));
        }
        for line in [
            "{",
            r#"{"a":}"#,
            r#"{"a":1}x"#,
            r#"{"extra":"\ud800"}"#,
            r#"{"room":"\ud800"}"#,
        ] {
            assert!(serde_json::from_str::<RawFrame>(line).is_err(), "{line}");
        }
    }
}
