//! Request bodies in Kubernetes' protobuf encoding
//! (`application/vnd.kubernetes.protobuf`), turned into the JSON form every
//! other module works with.
//!
//! Typed Go clients, kubectl's `create <kind>` generators among them, send
//! their objects this way: the four bytes `k8s\0`, then a `runtime.Unknown`
//! message whose `raw` field holds the object itself. The decoder below
//! knows nothing of Go types; it walks the protobuf wire format guided by
//! the schema table generated from the Go types (`table`, below), which says for every message
//! its field numbers, their JSON names and how each maps to JSON.
//!
//! Nothing is dropped silently: a field number or a kind the table does not
//! know is an error that asks the client to send JSON instead.

use std::fmt;

use base64::Engine;
use serde_json::{Map, Number, Value};

/// The media type of this encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// How deep messages may nest. The table's deepest path is far shallower;
/// this only bounds the recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        DecodeError { message: message.into() }
    }

    /// Something this server does not model, as opposed to a broken body.
    fn unsupported(what: impl fmt::Display) -> Self {
        DecodeError::new(format!("{what}, which this apiserver cannot decode from protobuf; send the object as JSON (Content-Type: application/json) instead"))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode the protobuf request body: {}", self.message)
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes a Kubernetes protobuf request body (the `k8s\0` envelope around a runtime.Unknown) into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value> {
    let Some(data) = body.strip_prefix(MAGIC) else {
        return Err(DecodeError::new("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\""));
    };
    let envelope = Envelope::read(data)?;
    if !envelope.content_encoding.is_empty() {
        return Err(DecodeError::unsupported(format_args!("the body has content encoding {:?}", envelope.content_encoding)));
    }
    if !matches!(envelope.content_type.as_str(), "" | MEDIA_TYPE) {
        return Err(DecodeError::unsupported(format_args!("the body's object has content type {:?}", envelope.content_type)));
    }
    let root = table::ROOTS
        .iter()
        .find(|(version, kind, _)| *kind == envelope.kind && (*version == envelope.api_version || *version == "*"))
        .map(|(_, _, message)| *message)
        .ok_or_else(|| DecodeError::unsupported(format_args!("the body holds apiVersion {:?} kind {:?}", envelope.api_version, envelope.kind)))?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    decode_message(root, envelope.raw, &mut object, 0)?;
    Ok(Value::Object(object))
}

/// The parts of runtime.Unknown: {1: TypeMeta {1: apiVersion, 2: kind},
/// 2: raw, 3: contentEncoding, 4: contentType}.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn read(data: &'a [u8]) -> Result<Self> {
        let mut envelope = Envelope { api_version: String::new(), kind: String::new(), raw: &[], content_encoding: String::new(), content_type: String::new() };
        let mut reader = Reader::new(data);
        while let Some((number, value)) = reader.field("runtime.Unknown")? {
            match number {
                1 => {
                    let mut meta = Reader::new(value.bytes("runtime.Unknown", number)?);
                    while let Some((n, v)) = meta.field("runtime.TypeMeta")? {
                        match n {
                            1 => envelope.api_version = v.string("runtime.TypeMeta", n)?,
                            2 => envelope.kind = v.string("runtime.TypeMeta", n)?,
                            _ => return Err(unknown_field("runtime.TypeMeta", n)),
                        }
                    }
                }
                2 => envelope.raw = value.bytes("runtime.Unknown", number)?,
                3 => envelope.content_encoding = value.string("runtime.Unknown", number)?,
                4 => envelope.content_type = value.string("runtime.Unknown", number)?,
                _ => return Err(unknown_field("runtime.Unknown", number)),
            }
        }
        Ok(envelope)
    }
}

fn unknown_field(message: &str, number: u32) -> DecodeError {
    DecodeError::unsupported(format_args!("message {message} has field number {number}"))
}

// ---------------------------------------------------------------------------
// The wire format.

/// One field's payload as it sits on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Wire<'a> {
    fn name(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "varint",
            Wire::Fixed64 => "64-bit",
            Wire::Bytes(_) => "length-delimited",
            Wire::Fixed32 => "32-bit",
        }
    }

    fn mismatch(&self, message: &str, number: u32, want: &str) -> DecodeError {
        DecodeError::new(format!("field {number} of {message} is {}, expected {want}", self.name()))
    }

    fn varint(self, message: &str, number: u32) -> Result<u64> {
        match self {
            Wire::Varint(v) => Ok(v),
            other => Err(other.mismatch(message, number, "varint")),
        }
    }

    fn bytes(self, message: &str, number: u32) -> Result<&'a [u8]> {
        match self {
            Wire::Bytes(b) => Ok(b),
            other => Err(other.mismatch(message, number, "length-delimited")),
        }
    }

    fn string(self, message: &str, number: u32) -> Result<String> {
        // Go strings may hold any bytes; its JSON encoder writes invalid
        // UTF-8 as U+FFFD, and so do we.
        Ok(String::from_utf8_lossy(self.bytes(message, number)?).into_owned())
    }
}

/// Reads fields off a message's bytes. Every length is checked against what
/// is left, so truncated or hostile input ends in an error, never a panic.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err(DecodeError::new("the data ends inside a varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(DecodeError::new("a varint is longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::new("a varint is longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = self.data.len() - self.pos;
        if n > rest {
            return Err(DecodeError::new(format!("the data ends early: a field needs {n} bytes, {rest} are left")));
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// The next field's number and payload; None at the end of the message.
    /// `message` names the message for errors.
    fn field(&mut self, message: &str) -> Result<Option<(u32, Wire<'a>)>> {
        if self.at_end() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(DecodeError::new(format!("{message} has a field with the invalid number {number}")));
        }
        let number = number as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| DecodeError::new(format!("field {number} of {message} has an impossible length {len}")))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            3 | 4 => return Err(DecodeError::new(format!("field {number} of {message} is a protobuf group, which Kubernetes never sends"))),
            other => return Err(DecodeError::new(format!("field {number} of {message} has the invalid wire type {other}"))),
        };
        Ok(Some((number, wire)))
    }
}

// ---------------------------------------------------------------------------
// Schema-driven decoding.

/// What a field holds on the wire and how it reads as JSON.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// Base64 in JSON, as Go writes []byte.
    Bytes,
    Bool,
    Int32,
    /// A JSON number, not a string as proto3's JSON mapping would have it.
    Int64,
    Msg(&'static Message),
    /// meta.v1.Time {1: seconds, 2: nanos}: RFC 3339 to the second; zero is null.
    Time,
    /// meta.v1.MicroTime: RFC 3339 with six fractional digits; zero is null.
    MicroTime,
    /// util.intstr.IntOrString {1: type (0 int, 1 string), 2: intVal, 3: strVal}.
    IntOrString,
    /// api.resource.Quantity {1: string}: the string.
    Quantity,
    /// runtime.RawExtension and meta.v1.FieldsV1 {1: raw}: raw is JSON.
    RawJson,
}

/// How a field sits in its message and in the JSON object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Present on the wire, present in JSON, even when zero: Go pointers,
    /// fields without omitempty, and structs (encoding/json never omits those).
    Keep,
    /// A Go scalar that is not a pointer, tagged omitempty. Go's protobuf
    /// encoder writes it always, its JSON encoder leaves it out when zero.
    OmitZero,
    /// A list: one wire entry per element (numbers may also come packed).
    Repeated,
    /// map<string, ty>: repeated entries {1: key, 2: value}.
    Map,
    /// A struct Go embeds inline (`json:",inline"`): its fields land in the
    /// enclosing JSON object.
    Inline,
}

struct Field {
    number: u32,
    json: &'static str,
    ty: Ty,
    rule: Rule,
}

/// A message of the table.
struct Message {
    /// Its package-qualified name, for errors ("core.v1.PodSpec").
    name: &'static str,
    fields: &'static [Field],
}

const fn f(number: u32, json: &'static str, ty: Ty, rule: Rule) -> Field {
    Field { number, json, ty, rule }
}

/// Decodes the fields of `message` found in `data` into `out`.
fn decode_message(message: &'static Message, data: &[u8], out: &mut Map<String, Value>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::new(format!("messages nest deeper than {MAX_DEPTH} levels")));
    }
    let mut reader = Reader::new(data);
    while let Some((number, wire)) = reader.field(message.name)? {
        let Some(field) = message.fields.iter().find(|f| f.number == number) else {
            return Err(unknown_field(message.name, number));
        };
        match field.rule {
            Rule::Keep | Rule::OmitZero => {
                let value = decode_value(message, field, wire, depth)?;
                if field.rule == Rule::OmitZero && is_zero(&value) {
                    out.remove(field.json);
                } else {
                    out.insert(field.json.into(), value);
                }
            }
            Rule::Repeated => {
                let list = out.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else { return Err(clash(message, field)) };
                match (field.ty, wire) {
                    // Packed numbers: one length-delimited run of varints.
                    (Ty::Bool | Ty::Int32 | Ty::Int64, Wire::Bytes(run)) => {
                        let mut packed = Reader::new(run);
                        while !packed.at_end() {
                            list.push(scalar(field.ty, packed.varint()?));
                        }
                    }
                    _ => list.push(decode_value(message, field, wire, depth)?),
                }
            }
            Rule::Map => {
                let (key, value) = decode_entry(message, field, wire.bytes(message.name, number)?, depth)?;
                let map = out.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(map) = map else { return Err(clash(message, field)) };
                map.insert(key, value);
            }
            Rule::Inline => {
                let Ty::Msg(inner) = field.ty else { return Err(clash(message, field)) };
                decode_message(inner, wire.bytes(message.name, number)?, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// A table entry that contradicts another (a bug of the table, which the
/// tests below rule out); an error rather than a panic all the same.
fn clash(message: &Message, field: &Field) -> DecodeError {
    DecodeError::new(format!("the schema of {} is inconsistent at field {} ({})", message.name, field.number, field.json))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// A number or bool from its varint, with protobuf's truncation for int32.
fn scalar(ty: Ty, v: u64) -> Value {
    match ty {
        Ty::Bool => Value::Bool(v != 0),
        Ty::Int32 => Value::Number(Number::from(v as i32)),
        _ => Value::Number(Number::from(v as i64)),
    }
}

/// One value of `field` (a whole field, a list element or a map value).
fn decode_value(message: &Message, field: &Field, wire: Wire<'_>, depth: usize) -> Result<Value> {
    let (name, number) = (message.name, field.number);
    Ok(match field.ty {
        Ty::Bool | Ty::Int32 | Ty::Int64 => scalar(field.ty, wire.varint(name, number)?),
        Ty::Str => Value::String(wire.string(name, number)?),
        Ty::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(wire.bytes(name, number)?)),
        Ty::Msg(inner) => {
            let mut object = Map::new();
            decode_message(inner, wire.bytes(name, number)?, &mut object, depth + 1)?;
            Value::Object(object)
        }
        Ty::Time => time(wire.bytes(name, number)?, false)?,
        Ty::MicroTime => time(wire.bytes(name, number)?, true)?,
        Ty::IntOrString => int_or_string(wire.bytes(name, number)?)?,
        Ty::Quantity => quantity(wire.bytes(name, number)?)?,
        Ty::RawJson => raw_json(wire.bytes(name, number)?, name, field.json)?,
    })
}

/// A map entry {1: key, 2: value}. A missing part is its zero value, as in
/// protobuf.
fn decode_entry(message: &Message, field: &Field, data: &[u8], depth: usize) -> Result<(String, Value)> {
    let entry_name = format!("{}.{} entry", message.name, field.json);
    let mut reader = Reader::new(data);
    let (mut key, mut value) = (String::new(), None);
    while let Some((number, wire)) = reader.field(&entry_name)? {
        match number {
            1 => key = wire.string(&entry_name, number)?,
            2 => value = Some(decode_value(message, field, wire, depth)?),
            _ => return Err(unknown_field(&entry_name, number)),
        }
    }
    let value = match value {
        Some(v) => v,
        None => decode_value(message, field, empty_of(field.ty), depth)?,
    };
    Ok((key, value))
}

/// The wire form of a field's zero value.
fn empty_of(ty: Ty) -> Wire<'static> {
    match ty {
        Ty::Bool | Ty::Int32 | Ty::Int64 => Wire::Varint(0),
        _ => Wire::Bytes(&[]),
    }
}

/// meta.v1.Time and MicroTime: {1: int64 seconds, 2: int32 nanos}.
fn time(data: &[u8], micro: bool) -> Result<Value> {
    let name = if micro { "meta.v1.MicroTime" } else { "meta.v1.Time" };
    if data.is_empty() {
        // Go writes its zero time as an empty message; its JSON is null.
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut reader = Reader::new(data);
    while let Some((number, wire)) = reader.field(name)? {
        match number {
            1 => seconds = wire.varint(name, number)? as i64,
            2 => nanos = wire.varint(name, number)? as i32,
            _ => return Err(unknown_field(name, number)),
        }
    }
    // Go's zero time, January 1 of year 1, should it come spelled out.
    if seconds == -62_135_596_800 && nanos == 0 {
        return Ok(Value::Null);
    }
    let t = u32::try_from(nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(seconds, n))
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| DecodeError::new(format!("{name} has seconds {seconds} and nanos {nanos}, which is no time between years 0 and 9999")))?;
    let text = if micro { t.format("%Y-%m-%dT%H:%M:%S%.6fZ") } else { t.format("%Y-%m-%dT%H:%M:%SZ") };
    Ok(Value::String(text.to_string()))
}

/// util.intstr.IntOrString: {1: int64 type, 2: int32 intVal, 3: string strVal}.
fn int_or_string(data: &[u8]) -> Result<Value> {
    const NAME: &str = "util.intstr.IntOrString";
    let (mut kind, mut int_val, mut str_val) = (0i64, 0i32, String::new());
    let mut reader = Reader::new(data);
    while let Some((number, wire)) = reader.field(NAME)? {
        match number {
            1 => kind = wire.varint(NAME, number)? as i64,
            2 => int_val = wire.varint(NAME, number)? as i32,
            3 => str_val = wire.string(NAME, number)?,
            _ => return Err(unknown_field(NAME, number)),
        }
    }
    match kind {
        0 => Ok(Value::Number(int_val.into())),
        1 => Ok(Value::String(str_val)),
        other => Err(DecodeError::new(format!("{NAME} has type {other}; only 0 (int) and 1 (string) exist"))),
    }
}

/// api.resource.Quantity: {1: string}.
fn quantity(data: &[u8]) -> Result<Value> {
    const NAME: &str = "api.resource.Quantity";
    // An empty message is Go's zero quantity, which it writes as "0".
    let mut text = String::from("0");
    let mut reader = Reader::new(data);
    while let Some((number, wire)) = reader.field(NAME)? {
        match number {
            1 => text = wire.string(NAME, number)?,
            _ => return Err(unknown_field(NAME, number)),
        }
    }
    if text.is_empty() {
        return Err(DecodeError::new(format!("{NAME} is the empty string, which is no quantity")));
    }
    Ok(Value::String(text))
}

/// runtime.RawExtension and meta.v1.FieldsV1: {1: bytes raw}, raw being
/// JSON. No raw is null, as Go writes it.
fn raw_json(data: &[u8], message: &str, json: &str) -> Result<Value> {
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(data);
    while let Some((number, wire)) = reader.field("runtime.RawExtension")? {
        match number {
            1 => raw = wire.bytes("runtime.RawExtension", number)?,
            _ => return Err(unknown_field("runtime.RawExtension", number)),
        }
    }
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| DecodeError::unsupported(format_args!("field {json} of {message} holds bytes that are not JSON ({e})")))
}

// ---------------------------------------------------------------------------
// The schema table.

/// Every message reachable from the kinds this apiserver serves (and from
/// Binding, Scale, Eviction and DeleteOptions, which clients send to it).
///
/// Generated, not written: `protobuf/generate.py` reads the Go structs of
/// k8s.io/api and k8s.io/apimachinery (v0.33, the release this apiserver
/// claims) and takes every field's number from its `protobuf:"..."` tag and
/// its JSON name, omitempty and inlining from its `json:"..."` tag; the
/// rules are explained at [`Rule`]. Regenerate it with
/// `generate.py --api DIR --apimachinery DIR --label "..."` after moving to
/// another Kubernetes version, and add a kind's root there when it is served.
#[rustfmt::skip]
#[path = "../protobuf/table.rs"]
mod table;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // A few helpers to build protobuf bytes by hand.

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A varint field.
    fn num(number: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3, &mut out);
        varint(v, &mut out);
        out
    }

    /// A length-delimited field holding `payload`.
    fn bytes(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint((u64::from(number) << 3) | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn text(number: u32, s: &str) -> Vec<u8> {
        bytes(number, s.as_bytes())
    }

    /// A message field made of the given fields.
    fn msg(number: u32, fields: &[Vec<u8>]) -> Vec<u8> {
        bytes(number, &fields.concat())
    }

    /// A map<string, string> entry.
    fn entry(number: u32, key: &str, value: &str) -> Vec<u8> {
        msg(number, &[text(1, key), text(2, value)])
    }

    /// The `k8s\0` envelope around an object.
    fn envelope(api_version: &str, kind: &str, raw: &[Vec<u8>]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(msg(1, &[text(1, api_version), text(2, kind)]));
        out.extend(bytes(2, &raw.concat()));
        out.extend(text(3, ""));
        out.extend(text(4, ""));
        out
    }

    /// ObjectMeta as Go writes it: every non-pointer field, empty or not.
    fn object_meta(name: &str, namespace: &str, extra: &[Vec<u8>]) -> Vec<u8> {
        let mut fields = vec![text(1, name), text(2, ""), text(3, namespace), text(4, ""), text(5, ""), text(6, ""), num(7, 0), msg(8, &[])];
        fields.extend_from_slice(extra);
        msg(1, &fields)
    }

    #[test]
    fn namespace() {
        let body = envelope("v1", "Namespace", &[object_meta("x", "", &[]), msg(2, &[]), msg(3, &[text(1, "")])]);
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "x", "creationTimestamp": null},
                "spec": {},
                "status": {},
            })
        );
    }

    #[test]
    fn config_map_with_data() {
        let labels = [entry(11, "app", "web"), entry(11, "tier", "")];
        let body = envelope(
            "v1",
            "ConfigMap",
            &[object_meta("settings", "default", &labels), entry(2, "a", "1"), entry(2, "b", "two words"), msg(3, &[text(1, "bin"), bytes(2, &[0, 1, 2])])],
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "default", "creationTimestamp": null, "labels": {"app": "web", "tier": ""}},
                "data": {"a": "1", "b": "two words"},
                "binaryData": {"bin": "AAEC"},
            })
        );
    }

    #[test]
    fn secret_data_is_base64() {
        let body = envelope("v1", "Secret", &[object_meta("s", "", &[]), msg(2, &[text(1, "password"), bytes(2, b"hunter2")]), text(3, "Opaque")]);
        let secret = decode(&body).unwrap();
        assert_eq!(secret["data"], json!({"password": "aHVudGVyMg=="}));
        assert_eq!(secret["type"], "Opaque");
    }

    /// A container as Go writes it for `kubectl create deployment`, plus a
    /// probe (IntOrString) and limits (Quantity).
    fn container() -> Vec<u8> {
        let quantity = |q: &str| msg(2, &[text(1, q)]);
        msg(
            2,
            &[
                text(1, "web"),
                text(2, "nginx"),
                text(4, "--verbose"),
                text(5, ""),
                msg(6, &[text(1, ""), num(2, 0), num(3, 80), text(4, "TCP"), text(5, "")]),
                msg(8, &[msg(1, &[text(1, "cpu"), quantity("500m")]), msg(2, &[text(1, "memory"), quantity("64Mi")])]),
                // livenessProbe: httpGet on the named port "http".
                msg(10, &[msg(1, &[msg(2, &[text(1, "/healthz"), msg(2, &[num(1, 1), num(2, 0), text(3, "http")])])]), num(2, 5)]),
                // readinessProbe: tcpSocket on port 8080.
                msg(11, &[msg(1, &[msg(3, &[msg(1, &[num(1, 0), num(2, 8080), text(3, "")])])])]),
                text(13, ""),
                text(14, ""),
                num(16, 0),
                num(17, 0),
                num(18, 0),
                text(20, ""),
            ],
        )
    }

    #[test]
    fn deployment_with_zero_replicas() {
        let labels = [entry(11, "app", "web")];
        let spec = msg(
            2,
            &[
                num(1, 0),
                msg(2, &[entry(1, "app", "web")]),
                msg(3, &[object_meta("", "", &labels), msg(2, &[container(), text(3, "Always"), text(6, "ClusterFirst")])]),
                msg(4, &[]),
                num(5, 0),
                num(7, 0),
            ],
        );
        let body = envelope("apps/v1", "Deployment", &[object_meta("web", "", &labels), spec, msg(3, &[])]);
        let expected = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx",
                            "args": ["--verbose"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
                            "readinessProbe": {"tcpSocket": {"port": 8080}},
                        }],
                        "restartPolicy": "Always",
                        "dnsPolicy": "ClusterFirst",
                    },
                },
                "strategy": {},
            },
            "status": {},
        });
        assert_eq!(decode(&body).unwrap(), expected);
    }

    #[test]
    fn volumes_inline_their_source() {
        let volume = msg(1, &[text(1, "data"), msg(2, &[msg(2, &[text(1, "")])])]);
        let body = envelope("v1", "Pod", &[object_meta("p", "", &[]), msg(2, &[volume])]);
        assert_eq!(decode(&body).unwrap()["spec"]["volumes"], json!([{"name": "data", "emptyDir": {}}]));
    }

    #[test]
    fn times_numbers_and_packed_lists() {
        // 2024-01-02T03:04:05.123456789Z
        let when = [num(1, 1_704_164_645), num(2, 123_456_789)];
        let meta = object_meta("x", "", &[msg(9, &when), num(10, 30)]);
        let event = envelope("v1", "Event", &[meta, msg(10, &when), num(8, (-1i64) as u64)]);
        let event = decode(&event).unwrap();
        assert_eq!(event["metadata"]["deletionTimestamp"], "2024-01-02T03:04:05Z");
        assert_eq!(event["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(event["eventTime"], "2024-01-02T03:04:05.123456Z");
        // count is an int32: a negative one arrives as ten sign-extended bytes.
        assert_eq!(event["count"], -1);

        // PodSecurityContext.supplementalGroups, packed and not.
        let mut run = Vec::new();
        for g in [1000u64, 2000] {
            varint(g, &mut run);
        }
        let pod = envelope("v1", "Pod", &[msg(2, &[msg(14, &[bytes(4, &run), num(4, 3000)])])]);
        assert_eq!(decode(&pod).unwrap()["spec"]["securityContext"]["supplementalGroups"], json!([1000, 2000, 3000]));
    }

    #[test]
    fn unknown_field_is_an_error() {
        let body = envelope("v1", "Pod", &[object_meta("p", "", &[]), msg(2, &[num(999, 1)])]);
        let e = decode(&body).unwrap_err().to_string();
        assert!(e.contains("core.v1.PodSpec") && e.contains("999") && e.contains("JSON"), "{e}");
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let body = envelope("storage.k8s.io/v1", "CSIDriver", &[object_meta("d", "", &[])]);
        let e = decode(&body).unwrap_err().to_string();
        assert!(e.contains("storage.k8s.io/v1") && e.contains("CSIDriver") && e.contains("JSON"), "{e}");
    }

    #[test]
    fn wrong_wire_type_and_bad_magic_are_errors() {
        // name (a string) sent as a varint.
        let body = envelope("v1", "Namespace", &[msg(1, &[num(1, 7)])]);
        let e = decode(&body).unwrap_err().to_string();
        assert!(e.contains("meta.v1.ObjectMeta") && e.contains("field 1"), "{e}");
        assert!(decode(b"{\"kind\":\"Namespace\"}").is_err());
        assert!(decode(b"").is_err());
    }

    #[test]
    fn truncated_input_is_an_error() {
        let body = envelope("v1", "ConfigMap", &[object_meta("settings", "default", &[]), entry(2, "a", "1")]);
        assert!(decode(&body).is_ok());
        // Cutting the body anywhere inside the envelope's type or raw
        // object leaves a length that runs past the end; cutting it right
        // after the type leaves a valid body without an object.
        let type_end = MAGIC.len() + msg(1, &[text(1, "v1"), text(2, "ConfigMap")]).len();
        let raw_end = body.len() - text(3, "").len() - text(4, "").len();
        assert_eq!(decode(&body[..type_end]).unwrap(), json!({"apiVersion": "v1", "kind": "ConfigMap"}));
        for cut in (MAGIC.len() + 1..raw_end).filter(|&cut| cut != type_end) {
            assert!(decode(&body[..cut]).is_err(), "a body cut at {cut} decoded");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64*: deterministic, no dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let labels = [entry(11, "app", "web")];
        let seed = envelope("apps/v1", "Deployment", &[object_meta("web", "", &labels), msg(2, &[num(1, 2), msg(3, &[msg(2, &[container()])])])]);
        for round in 0..100_000 {
            let body = if round % 2 == 0 {
                // Noise after the magic.
                let len = (next() % 96) as usize;
                let mut body = MAGIC.to_vec();
                body.extend((0..len).map(|_| next() as u8));
                body
            } else {
                // A valid body with a few bytes changed, dropped or added.
                let mut body = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let at = MAGIC.len() + (next() as usize) % (body.len() - MAGIC.len());
                    match next() % 3 {
                        0 => body[at] = next() as u8,
                        1 => {
                            body.remove(at);
                        }
                        _ => body.insert(at, next() as u8),
                    }
                }
                body
            };
            let _ = decode(&body);
        }
    }

    /// `kubectl create rolebinding` (1.32): subjects with an empty apiGroup
    /// (omitempty) and a roleRef whose fields are always written.
    #[test]
    fn role_binding() {
        let subject = |kind: &str, name: &str, namespace: &str| msg(2, &[text(1, kind), text(2, ""), text(3, name), text(4, namespace)]);
        let body = envelope(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            &[
                object_meta("read", "team", &[]),
                subject("User", "alice", ""),
                subject("ServiceAccount", "robot", "team"),
                msg(3, &[text(1, "rbac.authorization.k8s.io"), text(2, "Role"), text(3, "reader")]),
            ],
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "read", "namespace": "team", "creationTimestamp": null},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot", "namespace": "team"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            })
        );
    }

    /// A CronJob nests a Job's spec and a pod template; pointers (suspend,
    /// backoffLimit) keep their zero, omitempty strings drop it.
    #[test]
    fn cron_job_with_its_job_template() {
        let pod_spec = msg(2, &[msg(2, &[text(1, "tick"), text(2, "busybox")]), text(3, "OnFailure")]);
        let job_spec = msg(2, &[num(7, 0), msg(6, &[msg(1, &[msg(8, &[])]), pod_spec])]);
        let body = envelope(
            "batch/v1",
            "CronJob",
            &[
                object_meta("tick", "default", &[]),
                msg(2, &[text(1, "*/5 * * * *"), text(3, ""), num(4, 0), msg(5, &[msg(1, &[text(1, "tick"), msg(8, &[])]), job_spec]), num(6, 3)]),
                msg(3, &[]),
            ],
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "tick", "namespace": "default", "creationTimestamp": null},
                "spec": {
                    "schedule": "*/5 * * * *",
                    "suspend": false,
                    "successfulJobsHistoryLimit": 3,
                    "jobTemplate": {
                        "metadata": {"name": "tick", "creationTimestamp": null},
                        "spec": {
                            "backoffLimit": 0,
                            "template": {
                                "metadata": {"creationTimestamp": null},
                                "spec": {"containers": [{"name": "tick", "image": "busybox"}], "restartPolicy": "OnFailure"},
                            },
                        },
                    },
                },
                "status": {},
            })
        );
    }

    /// Every kind the apiserver stores can be created from protobuf.
    #[test]
    fn every_served_kind_has_a_root() {
        // Other versions of a stored kind are written through JSON only.
        for r in crate::resources::RESOURCES.iter().filter(|r| r.stored()) {
            let api_version = r.api_version();
            assert!(
                table::ROOTS.iter().any(|(v, k, _)| *v == api_version && *k == r.kind),
                "{api_version} {} is served but not in the protobuf table: add it to ROOTS in protobuf/generate.py and regenerate",
                r.kind
            );
        }
    }

    /// Every message reachable from the roots: field numbers and JSON names
    /// unique (across inlined messages too), inlining only messages.
    #[test]
    fn table_is_consistent() {
        fn json_names(m: &'static Message, names: &mut Vec<&'static str>) {
            for field in m.fields {
                match (field.rule, field.ty) {
                    (Rule::Inline, Ty::Msg(inner)) => json_names(inner, names),
                    (Rule::Inline, _) => panic!("{} inlines a non-message", m.name),
                    _ => names.push(field.json),
                }
            }
        }
        let mut todo: Vec<&'static Message> = table::ROOTS.iter().map(|(_, _, m)| *m).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(m) = todo.pop() {
            if !seen.insert(m.name) {
                continue;
            }
            let mut numbers: Vec<u32> = m.fields.iter().map(|f| f.number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(numbers.len(), m.fields.len(), "{} repeats a field number", m.name);
            let mut names = Vec::new();
            json_names(m, &mut names);
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), count, "{} repeats a JSON name", m.name);
            assert!(names.iter().all(|n| !n.is_empty()), "{} has a field without a JSON name", m.name);
            for field in m.fields {
                if let Ty::Msg(inner) = field.ty {
                    todo.push(inner);
                }
                if field.rule == Rule::OmitZero {
                    assert!(matches!(field.ty, Ty::Str | Ty::Bytes | Ty::Bool | Ty::Int32 | Ty::Int64), "{}.{}", m.name, field.json);
                }
            }
        }
        assert!(seen.len() > 150, "only {} messages reachable", seen.len());
    }
}
