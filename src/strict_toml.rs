//! The strict TOML loader shared by the menus (`ivr::menu`) and the server config (`config::file`):
//! text in, a typed value or every problem out, each with a byte span into the text.
//!
//! The text is parsed once (`toml_edit`, the parser `toml` itself uses, keeping every key's position).
//! Every key of every table is checked against the names the model's struct at that place accepts —
//! found by probing the model's own `Deserialize` impl with a data-less deserializer that follows the
//! key's path, so the names are exactly serde's and no list is kept by hand — and then the same parsed
//! document is deserialized into the model (which does not `deny_unknown_fields`: that stops at the
//! first). So one file reports every unknown key, each with its position and the accepted names, plus
//! the first type or syntax error (serde cannot resume after one).
//!
//! Why not `serde_ignored`: it cannot name a key whose type is `toml::Spanned<String>` (the menus'
//! names are; it fails with "non-string key"), and it has no way to say which names were expected.
//! It does not read files or turn spans into lines; `ivr::diag::line_col` does.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

/// One thing wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range of the offending key or value in the text.
    pub span: Range<usize>,
    /// What is wrong, as serde and toml word it (`unknown field `x`, expected one of …`).
    pub message: String,
    /// For an unknown key: the key and the keys its table accepts (for a did-you-mean hint).
    pub unknown: Option<(String, &'static [&'static str])>,
}

impl Problem {
    /// A did-you-mean (or "remove") hint for an unknown key; `None` for other problems.
    pub fn hint(&self) -> Option<String> {
        let (key, accepted) = self.unknown.as_ref()?;
        crate::ivr::diag::did_you_mean(key, accepted.iter().copied())
            .or_else(|| Some(format!("remove `{key}`")))
    }
}

/// Parses `src` as a `T`, refusing keys `T` does not declare. On error returns every unknown key and
/// the first other (syntax or type) error, in the order they appear in the text.
pub fn parse<T: DeserializeOwned>(src: &str) -> Result<T, Vec<Problem>> {
    match parse_keeping(src) {
        (Some(v), problems) if problems.is_empty() => Ok(v),
        (_, problems) => Err(problems),
    }
}

/// Like [`parse`], also returning the value when only unknown keys are wrong (so a caller can check
/// the known keys' values in the same run).
pub fn parse_keeping<T: DeserializeOwned>(src: &str) -> (Option<T>, Vec<Problem>) {
    let doc = match toml_edit::ImDocument::parse(src.to_owned()) {
        Ok(doc) => doc,
        Err(e) => {
            let problem = Problem {
                span: e.span().unwrap_or(0..0),
                message: e.message().trim().to_owned(),
                unknown: None,
            };
            return (None, vec![problem]);
        }
    };
    let mut problems = Vec::new();
    check_keys::<T>(Node::Item(doc.as_item()), &mut Vec::new(), &mut problems);
    let value = match toml_edit::de::from_document::<T>(doc) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem {
                span: e.span().unwrap_or(0..0),
                message: e.message().trim().to_owned(),
                unknown: None,
            });
            None
        }
    };
    problems.sort_by_key(|p| p.span.start);
    (value, problems)
}

/// Reports every key under `node` (at `path`) that the struct there does not accept, and walks into
/// the keys it does accept.
fn check_keys<T: DeserializeOwned>(node: Node, path: &mut Vec<Seg>, out: &mut Vec<Problem>) {
    if let Some(table) = node.table_like() {
        let accepted = accepted_keys::<T>(path);
        for (name, item) in table.iter() {
            if let Some(fields) = accepted {
                if !fields.contains(&name) {
                    let span = table
                        .get_key_value(name)
                        .and_then(|(k, _)| k.span())
                        .unwrap_or(0..0);
                    out.push(unknown_key(span, name, fields));
                    continue;
                }
            }
            path.push(Seg::Key(name.to_owned()));
            check_keys::<T>(Node::Item(item), path, out);
            path.pop();
        }
        return;
    }
    let mut i = 0;
    while let Some(element) = node.element(i) {
        path.push(Seg::Index(i));
        check_keys::<T>(element, path, out);
        path.pop();
        i += 1;
    }
}

fn unknown_key(span: Range<usize>, key: &str, fields: &'static [&'static str]) -> Problem {
    Problem {
        span,
        message: <de::value::Error as de::Error>::unknown_field(key, fields).to_string(),
        unknown: Some((key.to_owned(), fields)),
    }
}

/// One step of a key's path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A place in the parsed document: tables, arrays of tables and inline values are different types.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
        }
    }

    fn element(self, i: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.get(i).map(Node::Table),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => a.get(i).map(Node::Value),
            _ => None,
        }
    }
}

// ── the keys a table accepts: deserialize `T` from a probe that follows the path and stops at the
//    struct it leads to, reporting that struct's field names (exactly the names serde matches) ──

/// The field names of the struct at `path` inside `T`, if the path leads to a struct.
fn accepted_keys<T: DeserializeOwned>(path: &[Seg]) -> Option<&'static [&'static str]> {
    match T::deserialize(Probe { path }) {
        Err(ProbeEnd::Found(fields)) => Some(fields),
        _ => None,
    }
}

/// How a probe ends: it never produces a value.
#[derive(Debug)]
enum ProbeEnd {
    Found(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for ProbeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ProbeEnd {}

impl de::Error for ProbeEnd {
    fn custom<M: fmt::Display>(_: M) -> Self {
        ProbeEnd::NotAStruct
    }
}

/// A deserializer with no data, only a path: it answers a struct at the path's end with its fields.
struct Probe<'p> {
    path: &'p [Seg],
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeEnd;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeEnd> {
        Err(ProbeEnd::NotAStruct)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeEnd> {
        if name == SPANNED {
            return visitor.visit_map(SpannedAccess {
                step: 0,
                value: Some(self),
            });
        }
        match self.path.split_first() {
            None => Err(ProbeEnd::Found(fields)),
            Some((Seg::Key(k), rest)) if fields.contains(&k.as_str()) => {
                visitor.visit_map(OneEntry {
                    key: Some(k.clone()),
                    value: Some(Probe { path: rest }),
                })
            }
            _ => Err(ProbeEnd::NotAStruct),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeEnd> {
        match self.path.split_first() {
            Some((Seg::Key(k), rest)) => visitor.visit_map(OneEntry {
                key: Some(k.clone()),
                value: Some(Probe { path: rest }),
            }),
            _ => Err(ProbeEnd::NotAStruct),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeEnd> {
        match self.path.split_first() {
            Some((Seg::Index(_), rest)) => visitor.visit_seq(OneElement {
                value: Some(Probe { path: rest }),
            }),
            _ => Err(ProbeEnd::NotAStruct),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeEnd> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeEnd> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

/// `toml::Spanned`'s private protocol: a struct of this name with start, end and value fields.
const SPANNED: &str = "$__serde_spanned_private_Spanned";

/// Feeds `toml::Spanned`'s visitor: start 0, end 0, then the probe as the value.
struct SpannedAccess<D> {
    step: u8,
    value: Option<D>,
}

impl<'de, D: de::Deserializer<'de, Error = ProbeEnd>> de::MapAccess<'de> for SpannedAccess<D> {
    type Error = ProbeEnd;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeEnd> {
        let name = match self.step {
            0 => "$__serde_spanned_private_start",
            1 => "$__serde_spanned_private_end",
            2 => "$__serde_spanned_private_value",
            _ => return Ok(None),
        };
        seed.deserialize(de::value::BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeEnd> {
        self.step += 1;
        if self.step <= 2 {
            return seed.deserialize(0usize.into_deserializer());
        }
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(ProbeEnd::NotAStruct),
        }
    }
}

/// One map entry: the path's key (as a string, or a spanned string) and the probe for the rest.
struct OneEntry<'p> {
    key: Option<String>,
    value: Option<Probe<'p>>,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = ProbeEnd;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeEnd> {
        match self.key.take() {
            Some(k) => seed.deserialize(KeyProbe(k)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeEnd> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(ProbeEnd::NotAStruct),
        }
    }
}

/// One sequence element: the probe for the rest of the path.
struct OneElement<'p> {
    value: Option<Probe<'p>>,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = ProbeEnd;

    fn next_element_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ProbeEnd> {
        match self.value.take() {
            Some(v) => seed.deserialize(v).map(Some),
            None => Ok(None),
        }
    }
}

/// A map key: a string, also when the key type is `toml::Spanned<String>`.
struct KeyProbe(String);

impl<'de> de::Deserializer<'de> for KeyProbe {
    type Error = ProbeEnd;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeEnd> {
        visitor.visit_string(self.0)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeEnd> {
        if name == SPANNED {
            visitor.visit_map(SpannedAccess {
                step: 0,
                value: Some(self),
            })
        } else {
            Err(ProbeEnd::NotAStruct)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use toml::Spanned;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Root {
        name: Option<String>,
        #[serde(default)]
        items: BTreeMap<Spanned<String>, Spanned<Item>>,
        #[serde(default)]
        list: Vec<Spanned<Item>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        size: Option<u32>,
        then: Option<Box<Spanned<Item>>>,
    }

    fn keys(src: &str) -> Vec<(String, String)> {
        parse::<Root>(src)
            .unwrap_err()
            .into_iter()
            .map(|p| (src[p.span.clone()].to_owned(), p.message))
            .collect()
    }

    #[test]
    fn every_unknown_key_is_found_at_its_place_with_the_accepted_names() {
        let src = "bogus = 1\nname = \"x\"\n[items.a]\nsize = 1\nsise = 2\nthen = { size = 1, nope = { q = \"}\" } }\n[[list]]\n[[list]]\nextra = [1,\n 2]\n";
        assert_eq!(
            keys(src),
            [
                (
                    "bogus".into(),
                    "unknown field `bogus`, expected one of `name`, `items`, `list`".into()
                ),
                (
                    "sise".into(),
                    "unknown field `sise`, expected `size` or `then`".into()
                ),
                (
                    "nope".into(),
                    "unknown field `nope`, expected `size` or `then`".into()
                ),
                (
                    "extra".into(),
                    "unknown field `extra`, expected `size` or `then`".into()
                ),
            ]
        );
        let p = &parse::<Root>(src).unwrap_err()[1];
        assert_eq!(p.hint().as_deref(), Some("did you mean `size`?"));
    }

    #[test]
    fn a_type_error_is_placed_and_unknown_keys_before_it_kept() {
        let src = "wrong = 1\n[items.a]\nsize = \"big\"\n";
        let errs = parse::<Root>(src).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(&src[errs[0].span.clone()], "wrong");
        assert!(errs[1].message.contains("invalid type"), "{errs:?}");
        assert!(src[errs[1].span.clone()].contains("\"big\""), "{errs:?}");
    }

    #[test]
    fn a_valid_file_parses() {
        let r = parse::<Root>("name = \"x\"\n[items.a]\nthen = { size = 3 }\n").unwrap();
        assert_eq!(r.items.len(), 1);
    }
}
