//! Request bodies in Kubernetes' protobuf encoding
//! (`application/vnd.kubernetes.protobuf`), turned into the JSON form every
//! other module works with.
//!
//! Typed Go clients, kubectl's `create <kind>` generators among them, send
//! their objects this way: the four bytes `k8s\0`, then a `runtime.Unknown`
//! message whose `raw` field holds the object itself. The decoder below
//! knows nothing of Go types; it walks the protobuf wire format guided by
//! the schema table at the end of this file, which says for every message
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
/// Binding, Scale and DeleteOptions, which clients send to it).
///
/// Field numbers are those of the Kubernetes 1.35 protobuf definitions (as
/// in the k8s-pb 0.9.0 crate). JSON names, and whether a field is a Go
/// pointer, tagged omitempty or embedded inline, come from the Go struct
/// tags of the same release; the rules are explained at [`Rule`]. Messages
/// are listed before the messages that use them.
mod table {
    use super::{f, Message, Rule::*, Ty::*};

    pub(super) static ROOTS: &[(&str, &str, &Message)] = &[
        ("v1", "Namespace", &CORE_V1_NAMESPACE),
        ("v1", "Pod", &CORE_V1_POD),
        ("v1", "Node", &CORE_V1_NODE),
        ("v1", "Service", &CORE_V1_SERVICE),
        ("v1", "Endpoints", &CORE_V1_ENDPOINTS),
        ("v1", "ConfigMap", &CORE_V1_CONFIG_MAP),
        ("v1", "Secret", &CORE_V1_SECRET),
        ("v1", "Event", &CORE_V1_EVENT),
        ("v1", "ServiceAccount", &CORE_V1_SERVICE_ACCOUNT),
        ("v1", "Binding", &CORE_V1_BINDING),
        ("apps/v1", "Deployment", &APPS_V1_DEPLOYMENT),
        ("apps/v1", "ReplicaSet", &APPS_V1_REPLICA_SET),
        ("apps/v1", "DaemonSet", &APPS_V1_DAEMON_SET),
        ("coordination.k8s.io/v1", "Lease", &COORDINATION_V1_LEASE),
        ("discovery.k8s.io/v1", "EndpointSlice", &DISCOVERY_V1_ENDPOINT_SLICE),
        ("autoscaling/v1", "Scale", &AUTOSCALING_V1_SCALE),
        ("*", "DeleteOptions", &META_V1_DELETE_OPTIONS),
    ];

    static META_V1_OWNER_REFERENCE: Message = Message {
        name: "meta.v1.OwnerReference",
        fields: &[
            f(5, "apiVersion", Str, Keep),
            f(1, "kind", Str, Keep),
            f(3, "name", Str, Keep),
            f(4, "uid", Str, Keep),
            f(6, "controller", Bool, Keep),
            f(7, "blockOwnerDeletion", Bool, Keep),
        ],
    };

    static META_V1_MANAGED_FIELDS_ENTRY: Message = Message {
        name: "meta.v1.ManagedFieldsEntry",
        fields: &[
            f(1, "manager", Str, OmitZero),
            f(2, "operation", Str, OmitZero),
            f(3, "apiVersion", Str, OmitZero),
            f(4, "time", Time, Keep),
            f(6, "fieldsType", Str, OmitZero),
            f(7, "fieldsV1", RawJson, Keep),
            f(8, "subresource", Str, OmitZero),
        ],
    };

    static META_V1_OBJECT_META: Message = Message {
        name: "meta.v1.ObjectMeta",
        fields: &[
            f(1, "name", Str, OmitZero),
            f(2, "generateName", Str, OmitZero),
            f(3, "namespace", Str, OmitZero),
            f(4, "selfLink", Str, OmitZero),
            f(5, "uid", Str, OmitZero),
            f(6, "resourceVersion", Str, OmitZero),
            f(7, "generation", Int64, OmitZero),
            f(8, "creationTimestamp", Time, Keep),
            f(9, "deletionTimestamp", Time, Keep),
            f(10, "deletionGracePeriodSeconds", Int64, Keep),
            f(11, "labels", Str, Map),
            f(12, "annotations", Str, Map),
            f(13, "ownerReferences", Msg(&META_V1_OWNER_REFERENCE), Repeated),
            f(14, "finalizers", Str, Repeated),
            f(17, "managedFields", Msg(&META_V1_MANAGED_FIELDS_ENTRY), Repeated),
        ],
    };

    static CORE_V1_NAMESPACE_SPEC: Message = Message { name: "core.v1.NamespaceSpec", fields: &[f(1, "finalizers", Str, Repeated)] };

    static CORE_V1_NAMESPACE_CONDITION: Message = Message {
        name: "core.v1.NamespaceCondition",
        fields: &[
            f(1, "type", Str, Keep),
            f(2, "status", Str, Keep),
            f(4, "lastTransitionTime", Time, Keep),
            f(5, "reason", Str, OmitZero),
            f(6, "message", Str, OmitZero),
        ],
    };

    static CORE_V1_NAMESPACE_STATUS: Message =
        Message { name: "core.v1.NamespaceStatus", fields: &[f(1, "phase", Str, OmitZero), f(2, "conditions", Msg(&CORE_V1_NAMESPACE_CONDITION), Repeated)] };

    static CORE_V1_NAMESPACE: Message = Message {
        name: "core.v1.Namespace",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&CORE_V1_NAMESPACE_SPEC), Keep),
            f(3, "status", Msg(&CORE_V1_NAMESPACE_STATUS), Keep),
        ],
    };

    static CORE_V1_HOST_PATH_VOLUME_SOURCE: Message =
        Message { name: "core.v1.HostPathVolumeSource", fields: &[f(1, "path", Str, Keep), f(2, "type", Str, Keep)] };

    static CORE_V1_EMPTY_DIR_VOLUME_SOURCE: Message =
        Message { name: "core.v1.EmptyDirVolumeSource", fields: &[f(1, "medium", Str, OmitZero), f(2, "sizeLimit", Quantity, Keep)] };

    static CORE_V1_GCE_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message {
        name: "core.v1.GCEPersistentDiskVolumeSource",
        fields: &[f(1, "pdName", Str, Keep), f(2, "fsType", Str, OmitZero), f(3, "partition", Int32, OmitZero), f(4, "readOnly", Bool, OmitZero)],
    };

    static CORE_V1_AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE: Message = Message {
        name: "core.v1.AWSElasticBlockStoreVolumeSource",
        fields: &[f(1, "volumeID", Str, Keep), f(2, "fsType", Str, OmitZero), f(3, "partition", Int32, OmitZero), f(4, "readOnly", Bool, OmitZero)],
    };

    static CORE_V1_GIT_REPO_VOLUME_SOURCE: Message = Message {
        name: "core.v1.GitRepoVolumeSource",
        fields: &[f(1, "repository", Str, Keep), f(2, "revision", Str, OmitZero), f(3, "directory", Str, OmitZero)],
    };

    static CORE_V1_KEY_TO_PATH: Message =
        Message { name: "core.v1.KeyToPath", fields: &[f(1, "key", Str, Keep), f(2, "path", Str, Keep), f(3, "mode", Int32, Keep)] };

    static CORE_V1_SECRET_VOLUME_SOURCE: Message = Message {
        name: "core.v1.SecretVolumeSource",
        fields: &[
            f(1, "secretName", Str, OmitZero),
            f(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated),
            f(3, "defaultMode", Int32, Keep),
            f(4, "optional", Bool, Keep),
        ],
    };

    static CORE_V1_NFS_VOLUME_SOURCE: Message =
        Message { name: "core.v1.NFSVolumeSource", fields: &[f(1, "server", Str, Keep), f(2, "path", Str, Keep), f(3, "readOnly", Bool, OmitZero)] };

    static CORE_V1_LOCAL_OBJECT_REFERENCE: Message = Message { name: "core.v1.LocalObjectReference", fields: &[f(1, "name", Str, OmitZero)] };

    static CORE_V1_ISCSI_VOLUME_SOURCE: Message = Message {
        name: "core.v1.ISCSIVolumeSource",
        fields: &[
            f(1, "targetPortal", Str, Keep),
            f(2, "iqn", Str, Keep),
            f(3, "lun", Int32, Keep),
            f(4, "iscsiInterface", Str, OmitZero),
            f(5, "fsType", Str, OmitZero),
            f(6, "readOnly", Bool, OmitZero),
            f(7, "portals", Str, Repeated),
            f(8, "chapAuthDiscovery", Bool, OmitZero),
            f(11, "chapAuthSession", Bool, OmitZero),
            f(10, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
            f(12, "initiatorName", Str, Keep),
        ],
    };

    static CORE_V1_GLUSTERFS_VOLUME_SOURCE: Message =
        Message { name: "core.v1.GlusterfsVolumeSource", fields: &[f(1, "endpoints", Str, Keep), f(2, "path", Str, Keep), f(3, "readOnly", Bool, OmitZero)] };

    static CORE_V1_PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message =
        Message { name: "core.v1.PersistentVolumeClaimVolumeSource", fields: &[f(1, "claimName", Str, Keep), f(2, "readOnly", Bool, OmitZero)] };

    static CORE_V1_RBD_VOLUME_SOURCE: Message = Message {
        name: "core.v1.RBDVolumeSource",
        fields: &[
            f(1, "monitors", Str, Repeated),
            f(2, "image", Str, Keep),
            f(3, "fsType", Str, OmitZero),
            f(4, "pool", Str, OmitZero),
            f(5, "user", Str, OmitZero),
            f(6, "keyring", Str, OmitZero),
            f(7, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
            f(8, "readOnly", Bool, OmitZero),
        ],
    };

    static CORE_V1_FLEX_VOLUME_SOURCE: Message = Message {
        name: "core.v1.FlexVolumeSource",
        fields: &[
            f(1, "driver", Str, Keep),
            f(2, "fsType", Str, OmitZero),
            f(3, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
            f(4, "readOnly", Bool, OmitZero),
            f(5, "options", Str, Map),
        ],
    };

    static CORE_V1_CINDER_VOLUME_SOURCE: Message = Message {
        name: "core.v1.CinderVolumeSource",
        fields: &[
            f(1, "volumeID", Str, Keep),
            f(2, "fsType", Str, OmitZero),
            f(3, "readOnly", Bool, OmitZero),
            f(4, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
        ],
    };

    static CORE_V1_CEPH_FS_VOLUME_SOURCE: Message = Message {
        name: "core.v1.CephFSVolumeSource",
        fields: &[
            f(1, "monitors", Str, Repeated),
            f(2, "path", Str, OmitZero),
            f(3, "user", Str, OmitZero),
            f(4, "secretFile", Str, OmitZero),
            f(5, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
            f(6, "readOnly", Bool, OmitZero),
        ],
    };

    static CORE_V1_FLOCKER_VOLUME_SOURCE: Message =
        Message { name: "core.v1.FlockerVolumeSource", fields: &[f(1, "datasetName", Str, OmitZero), f(2, "datasetUUID", Str, OmitZero)] };

    static CORE_V1_OBJECT_FIELD_SELECTOR: Message =
        Message { name: "core.v1.ObjectFieldSelector", fields: &[f(1, "apiVersion", Str, OmitZero), f(2, "fieldPath", Str, Keep)] };

    static CORE_V1_RESOURCE_FIELD_SELECTOR: Message = Message {
        name: "core.v1.ResourceFieldSelector",
        fields: &[f(1, "containerName", Str, OmitZero), f(2, "resource", Str, Keep), f(3, "divisor", Quantity, Keep)],
    };

    static CORE_V1_DOWNWARD_API_VOLUME_FILE: Message = Message {
        name: "core.v1.DownwardAPIVolumeFile",
        fields: &[
            f(1, "path", Str, Keep),
            f(2, "fieldRef", Msg(&CORE_V1_OBJECT_FIELD_SELECTOR), Keep),
            f(3, "resourceFieldRef", Msg(&CORE_V1_RESOURCE_FIELD_SELECTOR), Keep),
            f(4, "mode", Int32, Keep),
        ],
    };

    static CORE_V1_DOWNWARD_API_VOLUME_SOURCE: Message = Message {
        name: "core.v1.DownwardAPIVolumeSource",
        fields: &[f(1, "items", Msg(&CORE_V1_DOWNWARD_API_VOLUME_FILE), Repeated), f(2, "defaultMode", Int32, Keep)],
    };

    static CORE_V1_FC_VOLUME_SOURCE: Message = Message {
        name: "core.v1.FCVolumeSource",
        fields: &[
            f(1, "targetWWNs", Str, Repeated),
            f(2, "lun", Int32, Keep),
            f(3, "fsType", Str, OmitZero),
            f(4, "readOnly", Bool, OmitZero),
            f(5, "wwids", Str, Repeated),
        ],
    };

    static CORE_V1_AZURE_FILE_VOLUME_SOURCE: Message = Message {
        name: "core.v1.AzureFileVolumeSource",
        fields: &[f(1, "secretName", Str, Keep), f(2, "shareName", Str, Keep), f(3, "readOnly", Bool, OmitZero)],
    };

    static CORE_V1_CONFIG_MAP_VOLUME_SOURCE: Message = Message {
        name: "core.v1.ConfigMapVolumeSource",
        fields: &[
            f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
            f(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated),
            f(3, "defaultMode", Int32, Keep),
            f(4, "optional", Bool, Keep),
        ],
    };

    static CORE_V1_VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE: Message = Message {
        name: "core.v1.VsphereVirtualDiskVolumeSource",
        fields: &[
            f(1, "volumePath", Str, Keep),
            f(2, "fsType", Str, OmitZero),
            f(3, "storagePolicyName", Str, OmitZero),
            f(4, "storagePolicyID", Str, OmitZero),
        ],
    };

    static CORE_V1_QUOBYTE_VOLUME_SOURCE: Message = Message {
        name: "core.v1.QuobyteVolumeSource",
        fields: &[
            f(1, "registry", Str, Keep),
            f(2, "volume", Str, Keep),
            f(3, "readOnly", Bool, OmitZero),
            f(4, "user", Str, OmitZero),
            f(5, "group", Str, OmitZero),
            f(6, "tenant", Str, OmitZero),
        ],
    };

    static CORE_V1_AZURE_DISK_VOLUME_SOURCE: Message = Message {
        name: "core.v1.AzureDiskVolumeSource",
        fields: &[
            f(1, "diskName", Str, Keep),
            f(2, "diskURI", Str, Keep),
            f(3, "cachingMode", Str, Keep),
            f(4, "fsType", Str, Keep),
            f(5, "readOnly", Bool, Keep),
            f(6, "kind", Str, Keep),
        ],
    };

    static CORE_V1_PHOTON_PERSISTENT_DISK_VOLUME_SOURCE: Message =
        Message { name: "core.v1.PhotonPersistentDiskVolumeSource", fields: &[f(1, "pdID", Str, Keep), f(2, "fsType", Str, OmitZero)] };

    static CORE_V1_SECRET_PROJECTION: Message = Message {
        name: "core.v1.SecretProjection",
        fields: &[f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline), f(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated), f(4, "optional", Bool, Keep)],
    };

    static CORE_V1_DOWNWARD_API_PROJECTION: Message =
        Message { name: "core.v1.DownwardAPIProjection", fields: &[f(1, "items", Msg(&CORE_V1_DOWNWARD_API_VOLUME_FILE), Repeated)] };

    static CORE_V1_CONFIG_MAP_PROJECTION: Message = Message {
        name: "core.v1.ConfigMapProjection",
        fields: &[f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline), f(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated), f(4, "optional", Bool, Keep)],
    };

    static CORE_V1_SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message {
        name: "core.v1.ServiceAccountTokenProjection",
        fields: &[f(1, "audience", Str, OmitZero), f(2, "expirationSeconds", Int64, Keep), f(3, "path", Str, Keep)],
    };

    static META_V1_LABEL_SELECTOR_REQUIREMENT: Message =
        Message { name: "meta.v1.LabelSelectorRequirement", fields: &[f(1, "key", Str, Keep), f(2, "operator", Str, Keep), f(3, "values", Str, Repeated)] };

    static META_V1_LABEL_SELECTOR: Message = Message {
        name: "meta.v1.LabelSelector",
        fields: &[f(1, "matchLabels", Str, Map), f(2, "matchExpressions", Msg(&META_V1_LABEL_SELECTOR_REQUIREMENT), Repeated)],
    };

    static CORE_V1_CLUSTER_TRUST_BUNDLE_PROJECTION: Message = Message {
        name: "core.v1.ClusterTrustBundleProjection",
        fields: &[
            f(1, "name", Str, Keep),
            f(2, "signerName", Str, Keep),
            f(3, "labelSelector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(5, "optional", Bool, Keep),
            f(4, "path", Str, Keep),
        ],
    };

    static CORE_V1_POD_CERTIFICATE_PROJECTION: Message = Message {
        name: "core.v1.PodCertificateProjection",
        fields: &[
            f(1, "signerName", Str, OmitZero),
            f(2, "keyType", Str, OmitZero),
            f(3, "maxExpirationSeconds", Int32, Keep),
            f(4, "credentialBundlePath", Str, OmitZero),
            f(5, "keyPath", Str, OmitZero),
            f(6, "certificateChainPath", Str, OmitZero),
            f(7, "userAnnotations", Str, Map),
        ],
    };

    static CORE_V1_VOLUME_PROJECTION: Message = Message {
        name: "core.v1.VolumeProjection",
        fields: &[
            f(1, "secret", Msg(&CORE_V1_SECRET_PROJECTION), Keep),
            f(2, "downwardAPI", Msg(&CORE_V1_DOWNWARD_API_PROJECTION), Keep),
            f(3, "configMap", Msg(&CORE_V1_CONFIG_MAP_PROJECTION), Keep),
            f(4, "serviceAccountToken", Msg(&CORE_V1_SERVICE_ACCOUNT_TOKEN_PROJECTION), Keep),
            f(5, "clusterTrustBundle", Msg(&CORE_V1_CLUSTER_TRUST_BUNDLE_PROJECTION), Keep),
            f(6, "podCertificate", Msg(&CORE_V1_POD_CERTIFICATE_PROJECTION), Keep),
        ],
    };

    static CORE_V1_PROJECTED_VOLUME_SOURCE: Message = Message {
        name: "core.v1.ProjectedVolumeSource",
        fields: &[f(1, "sources", Msg(&CORE_V1_VOLUME_PROJECTION), Repeated), f(2, "defaultMode", Int32, Keep)],
    };

    static CORE_V1_PORTWORX_VOLUME_SOURCE: Message = Message {
        name: "core.v1.PortworxVolumeSource",
        fields: &[f(1, "volumeID", Str, Keep), f(2, "fsType", Str, OmitZero), f(3, "readOnly", Bool, OmitZero)],
    };

    static CORE_V1_SCALE_IO_VOLUME_SOURCE: Message = Message {
        name: "core.v1.ScaleIOVolumeSource",
        fields: &[
            f(1, "gateway", Str, Keep),
            f(2, "system", Str, Keep),
            f(3, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
            f(4, "sslEnabled", Bool, OmitZero),
            f(5, "protectionDomain", Str, OmitZero),
            f(6, "storagePool", Str, OmitZero),
            f(7, "storageMode", Str, OmitZero),
            f(8, "volumeName", Str, OmitZero),
            f(9, "fsType", Str, OmitZero),
            f(10, "readOnly", Bool, OmitZero),
        ],
    };

    static CORE_V1_STORAGE_OS_VOLUME_SOURCE: Message = Message {
        name: "core.v1.StorageOSVolumeSource",
        fields: &[
            f(1, "volumeName", Str, OmitZero),
            f(2, "volumeNamespace", Str, OmitZero),
            f(3, "fsType", Str, OmitZero),
            f(4, "readOnly", Bool, OmitZero),
            f(5, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
        ],
    };

    static CORE_V1_CSI_VOLUME_SOURCE: Message = Message {
        name: "core.v1.CSIVolumeSource",
        fields: &[
            f(1, "driver", Str, Keep),
            f(2, "readOnly", Bool, Keep),
            f(3, "fsType", Str, Keep),
            f(4, "volumeAttributes", Str, Map),
            f(5, "nodePublishSecretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
        ],
    };

    static CORE_V1_VOLUME_RESOURCE_REQUIREMENTS: Message =
        Message { name: "core.v1.VolumeResourceRequirements", fields: &[f(1, "limits", Quantity, Map), f(2, "requests", Quantity, Map)] };

    static CORE_V1_TYPED_LOCAL_OBJECT_REFERENCE: Message =
        Message { name: "core.v1.TypedLocalObjectReference", fields: &[f(1, "apiGroup", Str, Keep), f(2, "kind", Str, Keep), f(3, "name", Str, Keep)] };

    static CORE_V1_TYPED_OBJECT_REFERENCE: Message = Message {
        name: "core.v1.TypedObjectReference",
        fields: &[f(1, "apiGroup", Str, Keep), f(2, "kind", Str, Keep), f(3, "name", Str, Keep), f(4, "namespace", Str, Keep)],
    };

    static CORE_V1_PERSISTENT_VOLUME_CLAIM_SPEC: Message = Message {
        name: "core.v1.PersistentVolumeClaimSpec",
        fields: &[
            f(1, "accessModes", Str, Repeated),
            f(4, "selector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(2, "resources", Msg(&CORE_V1_VOLUME_RESOURCE_REQUIREMENTS), Keep),
            f(3, "volumeName", Str, OmitZero),
            f(5, "storageClassName", Str, Keep),
            f(6, "volumeMode", Str, Keep),
            f(7, "dataSource", Msg(&CORE_V1_TYPED_LOCAL_OBJECT_REFERENCE), Keep),
            f(8, "dataSourceRef", Msg(&CORE_V1_TYPED_OBJECT_REFERENCE), Keep),
            f(9, "volumeAttributesClassName", Str, Keep),
        ],
    };

    static CORE_V1_PERSISTENT_VOLUME_CLAIM_TEMPLATE: Message = Message {
        name: "core.v1.PersistentVolumeClaimTemplate",
        fields: &[f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep), f(2, "spec", Msg(&CORE_V1_PERSISTENT_VOLUME_CLAIM_SPEC), Keep)],
    };

    static CORE_V1_EPHEMERAL_VOLUME_SOURCE: Message =
        Message { name: "core.v1.EphemeralVolumeSource", fields: &[f(1, "volumeClaimTemplate", Msg(&CORE_V1_PERSISTENT_VOLUME_CLAIM_TEMPLATE), Keep)] };

    static CORE_V1_IMAGE_VOLUME_SOURCE: Message =
        Message { name: "core.v1.ImageVolumeSource", fields: &[f(1, "reference", Str, OmitZero), f(2, "pullPolicy", Str, OmitZero)] };

    static CORE_V1_VOLUME_SOURCE: Message = Message {
        name: "core.v1.VolumeSource",
        fields: &[
            f(1, "hostPath", Msg(&CORE_V1_HOST_PATH_VOLUME_SOURCE), Keep),
            f(2, "emptyDir", Msg(&CORE_V1_EMPTY_DIR_VOLUME_SOURCE), Keep),
            f(3, "gcePersistentDisk", Msg(&CORE_V1_GCE_PERSISTENT_DISK_VOLUME_SOURCE), Keep),
            f(4, "awsElasticBlockStore", Msg(&CORE_V1_AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE), Keep),
            f(5, "gitRepo", Msg(&CORE_V1_GIT_REPO_VOLUME_SOURCE), Keep),
            f(6, "secret", Msg(&CORE_V1_SECRET_VOLUME_SOURCE), Keep),
            f(7, "nfs", Msg(&CORE_V1_NFS_VOLUME_SOURCE), Keep),
            f(8, "iscsi", Msg(&CORE_V1_ISCSI_VOLUME_SOURCE), Keep),
            f(9, "glusterfs", Msg(&CORE_V1_GLUSTERFS_VOLUME_SOURCE), Keep),
            f(10, "persistentVolumeClaim", Msg(&CORE_V1_PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE), Keep),
            f(11, "rbd", Msg(&CORE_V1_RBD_VOLUME_SOURCE), Keep),
            f(12, "flexVolume", Msg(&CORE_V1_FLEX_VOLUME_SOURCE), Keep),
            f(13, "cinder", Msg(&CORE_V1_CINDER_VOLUME_SOURCE), Keep),
            f(14, "cephfs", Msg(&CORE_V1_CEPH_FS_VOLUME_SOURCE), Keep),
            f(15, "flocker", Msg(&CORE_V1_FLOCKER_VOLUME_SOURCE), Keep),
            f(16, "downwardAPI", Msg(&CORE_V1_DOWNWARD_API_VOLUME_SOURCE), Keep),
            f(17, "fc", Msg(&CORE_V1_FC_VOLUME_SOURCE), Keep),
            f(18, "azureFile", Msg(&CORE_V1_AZURE_FILE_VOLUME_SOURCE), Keep),
            f(19, "configMap", Msg(&CORE_V1_CONFIG_MAP_VOLUME_SOURCE), Keep),
            f(20, "vsphereVolume", Msg(&CORE_V1_VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE), Keep),
            f(21, "quobyte", Msg(&CORE_V1_QUOBYTE_VOLUME_SOURCE), Keep),
            f(22, "azureDisk", Msg(&CORE_V1_AZURE_DISK_VOLUME_SOURCE), Keep),
            f(23, "photonPersistentDisk", Msg(&CORE_V1_PHOTON_PERSISTENT_DISK_VOLUME_SOURCE), Keep),
            f(26, "projected", Msg(&CORE_V1_PROJECTED_VOLUME_SOURCE), Keep),
            f(24, "portworxVolume", Msg(&CORE_V1_PORTWORX_VOLUME_SOURCE), Keep),
            f(25, "scaleIO", Msg(&CORE_V1_SCALE_IO_VOLUME_SOURCE), Keep),
            f(27, "storageos", Msg(&CORE_V1_STORAGE_OS_VOLUME_SOURCE), Keep),
            f(28, "csi", Msg(&CORE_V1_CSI_VOLUME_SOURCE), Keep),
            f(29, "ephemeral", Msg(&CORE_V1_EPHEMERAL_VOLUME_SOURCE), Keep),
            f(30, "image", Msg(&CORE_V1_IMAGE_VOLUME_SOURCE), Keep),
        ],
    };

    static CORE_V1_VOLUME: Message = Message { name: "core.v1.Volume", fields: &[f(1, "name", Str, Keep), f(2, "", Msg(&CORE_V1_VOLUME_SOURCE), Inline)] };

    static CORE_V1_CONTAINER_PORT: Message = Message {
        name: "core.v1.ContainerPort",
        fields: &[
            f(1, "name", Str, OmitZero),
            f(2, "hostPort", Int32, OmitZero),
            f(3, "containerPort", Int32, Keep),
            f(4, "protocol", Str, OmitZero),
            f(5, "hostIP", Str, OmitZero),
        ],
    };

    static CORE_V1_CONFIG_MAP_ENV_SOURCE: Message =
        Message { name: "core.v1.ConfigMapEnvSource", fields: &[f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline), f(2, "optional", Bool, Keep)] };

    static CORE_V1_SECRET_ENV_SOURCE: Message =
        Message { name: "core.v1.SecretEnvSource", fields: &[f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline), f(2, "optional", Bool, Keep)] };

    static CORE_V1_ENV_FROM_SOURCE: Message = Message {
        name: "core.v1.EnvFromSource",
        fields: &[
            f(1, "prefix", Str, OmitZero),
            f(2, "configMapRef", Msg(&CORE_V1_CONFIG_MAP_ENV_SOURCE), Keep),
            f(3, "secretRef", Msg(&CORE_V1_SECRET_ENV_SOURCE), Keep),
        ],
    };

    static CORE_V1_CONFIG_MAP_KEY_SELECTOR: Message = Message {
        name: "core.v1.ConfigMapKeySelector",
        fields: &[f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline), f(2, "key", Str, Keep), f(3, "optional", Bool, Keep)],
    };

    static CORE_V1_SECRET_KEY_SELECTOR: Message = Message {
        name: "core.v1.SecretKeySelector",
        fields: &[f(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline), f(2, "key", Str, Keep), f(3, "optional", Bool, Keep)],
    };

    static CORE_V1_FILE_KEY_SELECTOR: Message = Message {
        name: "core.v1.FileKeySelector",
        fields: &[f(1, "volumeName", Str, Keep), f(2, "path", Str, Keep), f(3, "key", Str, Keep), f(4, "optional", Bool, Keep)],
    };

    static CORE_V1_ENV_VAR_SOURCE: Message = Message {
        name: "core.v1.EnvVarSource",
        fields: &[
            f(1, "fieldRef", Msg(&CORE_V1_OBJECT_FIELD_SELECTOR), Keep),
            f(2, "resourceFieldRef", Msg(&CORE_V1_RESOURCE_FIELD_SELECTOR), Keep),
            f(3, "configMapKeyRef", Msg(&CORE_V1_CONFIG_MAP_KEY_SELECTOR), Keep),
            f(4, "secretKeyRef", Msg(&CORE_V1_SECRET_KEY_SELECTOR), Keep),
            f(5, "fileKeyRef", Msg(&CORE_V1_FILE_KEY_SELECTOR), Keep),
        ],
    };

    static CORE_V1_ENV_VAR: Message = Message {
        name: "core.v1.EnvVar",
        fields: &[f(1, "name", Str, Keep), f(2, "value", Str, OmitZero), f(3, "valueFrom", Msg(&CORE_V1_ENV_VAR_SOURCE), Keep)],
    };

    static CORE_V1_RESOURCE_CLAIM: Message = Message { name: "core.v1.ResourceClaim", fields: &[f(1, "name", Str, Keep), f(2, "request", Str, OmitZero)] };

    static CORE_V1_RESOURCE_REQUIREMENTS: Message = Message {
        name: "core.v1.ResourceRequirements",
        fields: &[f(1, "limits", Quantity, Map), f(2, "requests", Quantity, Map), f(3, "claims", Msg(&CORE_V1_RESOURCE_CLAIM), Repeated)],
    };

    static CORE_V1_CONTAINER_RESIZE_POLICY: Message =
        Message { name: "core.v1.ContainerResizePolicy", fields: &[f(1, "resourceName", Str, Keep), f(2, "restartPolicy", Str, Keep)] };

    static CORE_V1_CONTAINER_RESTART_RULE_ON_EXIT_CODES: Message =
        Message { name: "core.v1.ContainerRestartRuleOnExitCodes", fields: &[f(1, "operator", Str, OmitZero), f(2, "values", Int32, Repeated)] };

    static CORE_V1_CONTAINER_RESTART_RULE: Message = Message {
        name: "core.v1.ContainerRestartRule",
        fields: &[f(1, "action", Str, OmitZero), f(2, "exitCodes", Msg(&CORE_V1_CONTAINER_RESTART_RULE_ON_EXIT_CODES), Keep)],
    };

    static CORE_V1_VOLUME_MOUNT: Message = Message {
        name: "core.v1.VolumeMount",
        fields: &[
            f(1, "name", Str, Keep),
            f(2, "readOnly", Bool, OmitZero),
            f(7, "recursiveReadOnly", Str, Keep),
            f(3, "mountPath", Str, Keep),
            f(4, "subPath", Str, OmitZero),
            f(5, "mountPropagation", Str, Keep),
            f(6, "subPathExpr", Str, OmitZero),
        ],
    };

    static CORE_V1_VOLUME_DEVICE: Message = Message { name: "core.v1.VolumeDevice", fields: &[f(1, "name", Str, Keep), f(2, "devicePath", Str, Keep)] };

    static CORE_V1_EXEC_ACTION: Message = Message { name: "core.v1.ExecAction", fields: &[f(1, "command", Str, Repeated)] };

    static CORE_V1_HTTP_HEADER: Message = Message { name: "core.v1.HTTPHeader", fields: &[f(1, "name", Str, Keep), f(2, "value", Str, Keep)] };

    static CORE_V1_HTTP_GET_ACTION: Message = Message {
        name: "core.v1.HTTPGetAction",
        fields: &[
            f(1, "path", Str, OmitZero),
            f(2, "port", IntOrString, Keep),
            f(3, "host", Str, OmitZero),
            f(4, "scheme", Str, OmitZero),
            f(5, "httpHeaders", Msg(&CORE_V1_HTTP_HEADER), Repeated),
        ],
    };

    static CORE_V1_TCP_SOCKET_ACTION: Message =
        Message { name: "core.v1.TCPSocketAction", fields: &[f(1, "port", IntOrString, Keep), f(2, "host", Str, OmitZero)] };

    static CORE_V1_GRPC_ACTION: Message = Message { name: "core.v1.GRPCAction", fields: &[f(1, "port", Int32, Keep), f(2, "service", Str, Keep)] };

    static CORE_V1_PROBE_HANDLER: Message = Message {
        name: "core.v1.ProbeHandler",
        fields: &[
            f(1, "exec", Msg(&CORE_V1_EXEC_ACTION), Keep),
            f(2, "httpGet", Msg(&CORE_V1_HTTP_GET_ACTION), Keep),
            f(3, "tcpSocket", Msg(&CORE_V1_TCP_SOCKET_ACTION), Keep),
            f(4, "grpc", Msg(&CORE_V1_GRPC_ACTION), Keep),
        ],
    };

    static CORE_V1_PROBE: Message = Message {
        name: "core.v1.Probe",
        fields: &[
            f(1, "", Msg(&CORE_V1_PROBE_HANDLER), Inline),
            f(2, "initialDelaySeconds", Int32, OmitZero),
            f(3, "timeoutSeconds", Int32, OmitZero),
            f(4, "periodSeconds", Int32, OmitZero),
            f(5, "successThreshold", Int32, OmitZero),
            f(6, "failureThreshold", Int32, OmitZero),
            f(7, "terminationGracePeriodSeconds", Int64, Keep),
        ],
    };

    static CORE_V1_SLEEP_ACTION: Message = Message { name: "core.v1.SleepAction", fields: &[f(1, "seconds", Int64, Keep)] };

    static CORE_V1_LIFECYCLE_HANDLER: Message = Message {
        name: "core.v1.LifecycleHandler",
        fields: &[
            f(1, "exec", Msg(&CORE_V1_EXEC_ACTION), Keep),
            f(2, "httpGet", Msg(&CORE_V1_HTTP_GET_ACTION), Keep),
            f(3, "tcpSocket", Msg(&CORE_V1_TCP_SOCKET_ACTION), Keep),
            f(4, "sleep", Msg(&CORE_V1_SLEEP_ACTION), Keep),
        ],
    };

    static CORE_V1_LIFECYCLE: Message = Message {
        name: "core.v1.Lifecycle",
        fields: &[
            f(1, "postStart", Msg(&CORE_V1_LIFECYCLE_HANDLER), Keep),
            f(2, "preStop", Msg(&CORE_V1_LIFECYCLE_HANDLER), Keep),
            f(3, "stopSignal", Str, Keep),
        ],
    };

    static CORE_V1_CAPABILITIES: Message = Message { name: "core.v1.Capabilities", fields: &[f(1, "add", Str, Repeated), f(2, "drop", Str, Repeated)] };

    static CORE_V1_SE_LINUX_OPTIONS: Message = Message {
        name: "core.v1.SELinuxOptions",
        fields: &[f(1, "user", Str, OmitZero), f(2, "role", Str, OmitZero), f(3, "type", Str, OmitZero), f(4, "level", Str, OmitZero)],
    };

    static CORE_V1_WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message {
        name: "core.v1.WindowsSecurityContextOptions",
        fields: &[
            f(1, "gmsaCredentialSpecName", Str, Keep),
            f(2, "gmsaCredentialSpec", Str, Keep),
            f(3, "runAsUserName", Str, Keep),
            f(4, "hostProcess", Bool, Keep),
        ],
    };

    static CORE_V1_SECCOMP_PROFILE: Message =
        Message { name: "core.v1.SeccompProfile", fields: &[f(1, "type", Str, Keep), f(2, "localhostProfile", Str, Keep)] };

    static CORE_V1_APP_ARMOR_PROFILE: Message =
        Message { name: "core.v1.AppArmorProfile", fields: &[f(1, "type", Str, Keep), f(2, "localhostProfile", Str, Keep)] };

    static CORE_V1_SECURITY_CONTEXT: Message = Message {
        name: "core.v1.SecurityContext",
        fields: &[
            f(1, "capabilities", Msg(&CORE_V1_CAPABILITIES), Keep),
            f(2, "privileged", Bool, Keep),
            f(3, "seLinuxOptions", Msg(&CORE_V1_SE_LINUX_OPTIONS), Keep),
            f(10, "windowsOptions", Msg(&CORE_V1_WINDOWS_SECURITY_CONTEXT_OPTIONS), Keep),
            f(4, "runAsUser", Int64, Keep),
            f(8, "runAsGroup", Int64, Keep),
            f(5, "runAsNonRoot", Bool, Keep),
            f(6, "readOnlyRootFilesystem", Bool, Keep),
            f(7, "allowPrivilegeEscalation", Bool, Keep),
            f(9, "procMount", Str, Keep),
            f(11, "seccompProfile", Msg(&CORE_V1_SECCOMP_PROFILE), Keep),
            f(12, "appArmorProfile", Msg(&CORE_V1_APP_ARMOR_PROFILE), Keep),
        ],
    };

    /// A Container and the common part of an EphemeralContainer share
    /// their field numbers.
    const CONTAINER_FIELDS: &[super::Field] = &[
        f(1, "name", Str, Keep),
        f(2, "image", Str, OmitZero),
        f(3, "command", Str, Repeated),
        f(4, "args", Str, Repeated),
        f(5, "workingDir", Str, OmitZero),
        f(6, "ports", Msg(&CORE_V1_CONTAINER_PORT), Repeated),
        f(19, "envFrom", Msg(&CORE_V1_ENV_FROM_SOURCE), Repeated),
        f(7, "env", Msg(&CORE_V1_ENV_VAR), Repeated),
        f(8, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), Keep),
        f(23, "resizePolicy", Msg(&CORE_V1_CONTAINER_RESIZE_POLICY), Repeated),
        f(24, "restartPolicy", Str, Keep),
        f(25, "restartPolicyRules", Msg(&CORE_V1_CONTAINER_RESTART_RULE), Repeated),
        f(9, "volumeMounts", Msg(&CORE_V1_VOLUME_MOUNT), Repeated),
        f(21, "volumeDevices", Msg(&CORE_V1_VOLUME_DEVICE), Repeated),
        f(10, "livenessProbe", Msg(&CORE_V1_PROBE), Keep),
        f(11, "readinessProbe", Msg(&CORE_V1_PROBE), Keep),
        f(22, "startupProbe", Msg(&CORE_V1_PROBE), Keep),
        f(12, "lifecycle", Msg(&CORE_V1_LIFECYCLE), Keep),
        f(13, "terminationMessagePath", Str, OmitZero),
        f(20, "terminationMessagePolicy", Str, OmitZero),
        f(14, "imagePullPolicy", Str, OmitZero),
        f(15, "securityContext", Msg(&CORE_V1_SECURITY_CONTEXT), Keep),
        f(16, "stdin", Bool, OmitZero),
        f(17, "stdinOnce", Bool, OmitZero),
        f(18, "tty", Bool, OmitZero),
    ];

    static CORE_V1_CONTAINER: Message = Message { name: "core.v1.Container", fields: CONTAINER_FIELDS };

    static CORE_V1_EPHEMERAL_CONTAINER_COMMON: Message = Message { name: "core.v1.EphemeralContainerCommon", fields: CONTAINER_FIELDS };

    static CORE_V1_EPHEMERAL_CONTAINER: Message = Message {
        name: "core.v1.EphemeralContainer",
        fields: &[f(1, "", Msg(&CORE_V1_EPHEMERAL_CONTAINER_COMMON), Inline), f(2, "targetContainerName", Str, OmitZero)],
    };

    static CORE_V1_SYSCTL: Message = Message { name: "core.v1.Sysctl", fields: &[f(1, "name", Str, Keep), f(2, "value", Str, Keep)] };

    static CORE_V1_POD_SECURITY_CONTEXT: Message = Message {
        name: "core.v1.PodSecurityContext",
        fields: &[
            f(1, "seLinuxOptions", Msg(&CORE_V1_SE_LINUX_OPTIONS), Keep),
            f(8, "windowsOptions", Msg(&CORE_V1_WINDOWS_SECURITY_CONTEXT_OPTIONS), Keep),
            f(2, "runAsUser", Int64, Keep),
            f(6, "runAsGroup", Int64, Keep),
            f(3, "runAsNonRoot", Bool, Keep),
            f(4, "supplementalGroups", Int64, Repeated),
            f(12, "supplementalGroupsPolicy", Str, Keep),
            f(5, "fsGroup", Int64, Keep),
            f(7, "sysctls", Msg(&CORE_V1_SYSCTL), Repeated),
            f(9, "fsGroupChangePolicy", Str, Keep),
            f(10, "seccompProfile", Msg(&CORE_V1_SECCOMP_PROFILE), Keep),
            f(11, "appArmorProfile", Msg(&CORE_V1_APP_ARMOR_PROFILE), Keep),
            f(13, "seLinuxChangePolicy", Str, Keep),
        ],
    };

    static CORE_V1_NODE_SELECTOR_REQUIREMENT: Message =
        Message { name: "core.v1.NodeSelectorRequirement", fields: &[f(1, "key", Str, Keep), f(2, "operator", Str, Keep), f(3, "values", Str, Repeated)] };

    static CORE_V1_NODE_SELECTOR_TERM: Message = Message {
        name: "core.v1.NodeSelectorTerm",
        fields: &[
            f(1, "matchExpressions", Msg(&CORE_V1_NODE_SELECTOR_REQUIREMENT), Repeated),
            f(2, "matchFields", Msg(&CORE_V1_NODE_SELECTOR_REQUIREMENT), Repeated),
        ],
    };

    static CORE_V1_NODE_SELECTOR: Message =
        Message { name: "core.v1.NodeSelector", fields: &[f(1, "nodeSelectorTerms", Msg(&CORE_V1_NODE_SELECTOR_TERM), Repeated)] };

    static CORE_V1_PREFERRED_SCHEDULING_TERM: Message =
        Message { name: "core.v1.PreferredSchedulingTerm", fields: &[f(1, "weight", Int32, Keep), f(2, "preference", Msg(&CORE_V1_NODE_SELECTOR_TERM), Keep)] };

    static CORE_V1_NODE_AFFINITY: Message = Message {
        name: "core.v1.NodeAffinity",
        fields: &[
            f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_NODE_SELECTOR), Keep),
            f(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_PREFERRED_SCHEDULING_TERM), Repeated),
        ],
    };

    static CORE_V1_POD_AFFINITY_TERM: Message = Message {
        name: "core.v1.PodAffinityTerm",
        fields: &[
            f(1, "labelSelector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(2, "namespaces", Str, Repeated),
            f(3, "topologyKey", Str, Keep),
            f(4, "namespaceSelector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(5, "matchLabelKeys", Str, Repeated),
            f(6, "mismatchLabelKeys", Str, Repeated),
        ],
    };

    static CORE_V1_WEIGHTED_POD_AFFINITY_TERM: Message = Message {
        name: "core.v1.WeightedPodAffinityTerm",
        fields: &[f(1, "weight", Int32, Keep), f(2, "podAffinityTerm", Msg(&CORE_V1_POD_AFFINITY_TERM), Keep)],
    };

    static CORE_V1_POD_AFFINITY: Message = Message {
        name: "core.v1.PodAffinity",
        fields: &[
            f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_POD_AFFINITY_TERM), Repeated),
            f(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_WEIGHTED_POD_AFFINITY_TERM), Repeated),
        ],
    };

    static CORE_V1_POD_ANTI_AFFINITY: Message = Message {
        name: "core.v1.PodAntiAffinity",
        fields: &[
            f(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_POD_AFFINITY_TERM), Repeated),
            f(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_WEIGHTED_POD_AFFINITY_TERM), Repeated),
        ],
    };

    static CORE_V1_AFFINITY: Message = Message {
        name: "core.v1.Affinity",
        fields: &[
            f(1, "nodeAffinity", Msg(&CORE_V1_NODE_AFFINITY), Keep),
            f(2, "podAffinity", Msg(&CORE_V1_POD_AFFINITY), Keep),
            f(3, "podAntiAffinity", Msg(&CORE_V1_POD_ANTI_AFFINITY), Keep),
        ],
    };

    static CORE_V1_TOLERATION: Message = Message {
        name: "core.v1.Toleration",
        fields: &[
            f(1, "key", Str, OmitZero),
            f(2, "operator", Str, OmitZero),
            f(3, "value", Str, OmitZero),
            f(4, "effect", Str, OmitZero),
            f(5, "tolerationSeconds", Int64, Keep),
        ],
    };

    static CORE_V1_HOST_ALIAS: Message = Message { name: "core.v1.HostAlias", fields: &[f(1, "ip", Str, Keep), f(2, "hostnames", Str, Repeated)] };

    static CORE_V1_POD_DNS_CONFIG_OPTION: Message =
        Message { name: "core.v1.PodDNSConfigOption", fields: &[f(1, "name", Str, OmitZero), f(2, "value", Str, Keep)] };

    static CORE_V1_POD_DNS_CONFIG: Message = Message {
        name: "core.v1.PodDNSConfig",
        fields: &[f(1, "nameservers", Str, Repeated), f(2, "searches", Str, Repeated), f(3, "options", Msg(&CORE_V1_POD_DNS_CONFIG_OPTION), Repeated)],
    };

    static CORE_V1_POD_READINESS_GATE: Message = Message { name: "core.v1.PodReadinessGate", fields: &[f(1, "conditionType", Str, Keep)] };

    static CORE_V1_TOPOLOGY_SPREAD_CONSTRAINT: Message = Message {
        name: "core.v1.TopologySpreadConstraint",
        fields: &[
            f(1, "maxSkew", Int32, Keep),
            f(2, "topologyKey", Str, Keep),
            f(3, "whenUnsatisfiable", Str, Keep),
            f(4, "labelSelector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(5, "minDomains", Int32, Keep),
            f(6, "nodeAffinityPolicy", Str, Keep),
            f(7, "nodeTaintsPolicy", Str, Keep),
            f(8, "matchLabelKeys", Str, Repeated),
        ],
    };

    static CORE_V1_POD_OS: Message = Message { name: "core.v1.PodOS", fields: &[f(1, "name", Str, Keep)] };

    static CORE_V1_POD_SCHEDULING_GATE: Message = Message { name: "core.v1.PodSchedulingGate", fields: &[f(1, "name", Str, Keep)] };

    static CORE_V1_POD_RESOURCE_CLAIM: Message = Message {
        name: "core.v1.PodResourceClaim",
        fields: &[f(1, "name", Str, Keep), f(3, "resourceClaimName", Str, Keep), f(4, "resourceClaimTemplateName", Str, Keep)],
    };

    static CORE_V1_WORKLOAD_REFERENCE: Message = Message {
        name: "core.v1.WorkloadReference",
        fields: &[f(1, "name", Str, Keep), f(2, "podGroup", Str, Keep), f(3, "podGroupReplicaKey", Str, OmitZero)],
    };

    static CORE_V1_POD_SPEC: Message = Message {
        name: "core.v1.PodSpec",
        fields: &[
            f(1, "volumes", Msg(&CORE_V1_VOLUME), Repeated),
            f(20, "initContainers", Msg(&CORE_V1_CONTAINER), Repeated),
            f(2, "containers", Msg(&CORE_V1_CONTAINER), Repeated),
            f(34, "ephemeralContainers", Msg(&CORE_V1_EPHEMERAL_CONTAINER), Repeated),
            f(3, "restartPolicy", Str, OmitZero),
            f(4, "terminationGracePeriodSeconds", Int64, Keep),
            f(5, "activeDeadlineSeconds", Int64, Keep),
            f(6, "dnsPolicy", Str, OmitZero),
            f(7, "nodeSelector", Str, Map),
            f(8, "serviceAccountName", Str, OmitZero),
            f(9, "serviceAccount", Str, OmitZero),
            f(21, "automountServiceAccountToken", Bool, Keep),
            f(10, "nodeName", Str, OmitZero),
            f(11, "hostNetwork", Bool, OmitZero),
            f(12, "hostPID", Bool, OmitZero),
            f(13, "hostIPC", Bool, OmitZero),
            f(27, "shareProcessNamespace", Bool, Keep),
            f(14, "securityContext", Msg(&CORE_V1_POD_SECURITY_CONTEXT), Keep),
            f(15, "imagePullSecrets", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Repeated),
            f(16, "hostname", Str, OmitZero),
            f(17, "subdomain", Str, OmitZero),
            f(18, "affinity", Msg(&CORE_V1_AFFINITY), Keep),
            f(19, "schedulerName", Str, OmitZero),
            f(22, "tolerations", Msg(&CORE_V1_TOLERATION), Repeated),
            f(23, "hostAliases", Msg(&CORE_V1_HOST_ALIAS), Repeated),
            f(24, "priorityClassName", Str, OmitZero),
            f(25, "priority", Int32, Keep),
            f(26, "dnsConfig", Msg(&CORE_V1_POD_DNS_CONFIG), Keep),
            f(28, "readinessGates", Msg(&CORE_V1_POD_READINESS_GATE), Repeated),
            f(29, "runtimeClassName", Str, Keep),
            f(30, "enableServiceLinks", Bool, Keep),
            f(31, "preemptionPolicy", Str, Keep),
            f(32, "overhead", Quantity, Map),
            f(33, "topologySpreadConstraints", Msg(&CORE_V1_TOPOLOGY_SPREAD_CONSTRAINT), Repeated),
            f(35, "setHostnameAsFQDN", Bool, Keep),
            f(36, "os", Msg(&CORE_V1_POD_OS), Keep),
            f(37, "hostUsers", Bool, Keep),
            f(38, "schedulingGates", Msg(&CORE_V1_POD_SCHEDULING_GATE), Repeated),
            f(39, "resourceClaims", Msg(&CORE_V1_POD_RESOURCE_CLAIM), Repeated),
            f(40, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), Keep),
            f(41, "hostnameOverride", Str, Keep),
            f(42, "workloadRef", Msg(&CORE_V1_WORKLOAD_REFERENCE), Keep),
        ],
    };

    static CORE_V1_POD_CONDITION: Message = Message {
        name: "core.v1.PodCondition",
        fields: &[
            f(1, "type", Str, Keep),
            f(7, "observedGeneration", Int64, OmitZero),
            f(2, "status", Str, Keep),
            f(3, "lastProbeTime", Time, Keep),
            f(4, "lastTransitionTime", Time, Keep),
            f(5, "reason", Str, OmitZero),
            f(6, "message", Str, OmitZero),
        ],
    };

    static CORE_V1_HOST_IP: Message = Message { name: "core.v1.HostIP", fields: &[f(1, "ip", Str, Keep)] };

    static CORE_V1_POD_IP: Message = Message { name: "core.v1.PodIP", fields: &[f(1, "ip", Str, Keep)] };

    static CORE_V1_CONTAINER_STATE_WAITING: Message =
        Message { name: "core.v1.ContainerStateWaiting", fields: &[f(1, "reason", Str, OmitZero), f(2, "message", Str, OmitZero)] };

    static CORE_V1_CONTAINER_STATE_RUNNING: Message = Message { name: "core.v1.ContainerStateRunning", fields: &[f(1, "startedAt", Time, Keep)] };

    static CORE_V1_CONTAINER_STATE_TERMINATED: Message = Message {
        name: "core.v1.ContainerStateTerminated",
        fields: &[
            f(1, "exitCode", Int32, Keep),
            f(2, "signal", Int32, OmitZero),
            f(3, "reason", Str, OmitZero),
            f(4, "message", Str, OmitZero),
            f(5, "startedAt", Time, Keep),
            f(6, "finishedAt", Time, Keep),
            f(7, "containerID", Str, OmitZero),
        ],
    };

    static CORE_V1_CONTAINER_STATE: Message = Message {
        name: "core.v1.ContainerState",
        fields: &[
            f(1, "waiting", Msg(&CORE_V1_CONTAINER_STATE_WAITING), Keep),
            f(2, "running", Msg(&CORE_V1_CONTAINER_STATE_RUNNING), Keep),
            f(3, "terminated", Msg(&CORE_V1_CONTAINER_STATE_TERMINATED), Keep),
        ],
    };

    static CORE_V1_VOLUME_MOUNT_STATUS: Message = Message {
        name: "core.v1.VolumeMountStatus",
        fields: &[f(1, "name", Str, Keep), f(2, "mountPath", Str, Keep), f(3, "readOnly", Bool, OmitZero), f(4, "recursiveReadOnly", Str, Keep)],
    };

    static CORE_V1_LINUX_CONTAINER_USER: Message = Message {
        name: "core.v1.LinuxContainerUser",
        fields: &[f(1, "uid", Int64, Keep), f(2, "gid", Int64, Keep), f(3, "supplementalGroups", Int64, Repeated)],
    };

    static CORE_V1_CONTAINER_USER: Message = Message { name: "core.v1.ContainerUser", fields: &[f(1, "linux", Msg(&CORE_V1_LINUX_CONTAINER_USER), Keep)] };

    static CORE_V1_RESOURCE_HEALTH: Message =
        Message { name: "core.v1.ResourceHealth", fields: &[f(1, "resourceID", Str, Keep), f(2, "health", Str, OmitZero)] };

    static CORE_V1_RESOURCE_STATUS: Message =
        Message { name: "core.v1.ResourceStatus", fields: &[f(1, "name", Str, Keep), f(2, "resources", Msg(&CORE_V1_RESOURCE_HEALTH), Repeated)] };

    static CORE_V1_CONTAINER_STATUS: Message = Message {
        name: "core.v1.ContainerStatus",
        fields: &[
            f(1, "name", Str, Keep),
            f(2, "state", Msg(&CORE_V1_CONTAINER_STATE), Keep),
            f(3, "lastState", Msg(&CORE_V1_CONTAINER_STATE), Keep),
            f(4, "ready", Bool, Keep),
            f(5, "restartCount", Int32, Keep),
            f(6, "image", Str, Keep),
            f(7, "imageID", Str, Keep),
            f(8, "containerID", Str, OmitZero),
            f(9, "started", Bool, Keep),
            f(10, "allocatedResources", Quantity, Map),
            f(11, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), Keep),
            f(12, "volumeMounts", Msg(&CORE_V1_VOLUME_MOUNT_STATUS), Repeated),
            f(13, "user", Msg(&CORE_V1_CONTAINER_USER), Keep),
            f(14, "allocatedResourcesStatus", Msg(&CORE_V1_RESOURCE_STATUS), Repeated),
            f(15, "stopSignal", Str, Keep),
        ],
    };

    static CORE_V1_POD_RESOURCE_CLAIM_STATUS: Message =
        Message { name: "core.v1.PodResourceClaimStatus", fields: &[f(1, "name", Str, Keep), f(2, "resourceClaimName", Str, Keep)] };

    static CORE_V1_CONTAINER_EXTENDED_RESOURCE_REQUEST: Message = Message {
        name: "core.v1.ContainerExtendedResourceRequest",
        fields: &[f(1, "containerName", Str, Keep), f(2, "resourceName", Str, Keep), f(3, "requestName", Str, Keep)],
    };

    static CORE_V1_POD_EXTENDED_RESOURCE_CLAIM_STATUS: Message = Message {
        name: "core.v1.PodExtendedResourceClaimStatus",
        fields: &[f(1, "requestMappings", Msg(&CORE_V1_CONTAINER_EXTENDED_RESOURCE_REQUEST), Repeated), f(2, "resourceClaimName", Str, Keep)],
    };

    static CORE_V1_POD_STATUS: Message = Message {
        name: "core.v1.PodStatus",
        fields: &[
            f(17, "observedGeneration", Int64, OmitZero),
            f(1, "phase", Str, OmitZero),
            f(2, "conditions", Msg(&CORE_V1_POD_CONDITION), Repeated),
            f(3, "message", Str, OmitZero),
            f(4, "reason", Str, OmitZero),
            f(11, "nominatedNodeName", Str, OmitZero),
            f(5, "hostIP", Str, OmitZero),
            f(16, "hostIPs", Msg(&CORE_V1_HOST_IP), Repeated),
            f(6, "podIP", Str, OmitZero),
            f(12, "podIPs", Msg(&CORE_V1_POD_IP), Repeated),
            f(7, "startTime", Time, Keep),
            f(10, "initContainerStatuses", Msg(&CORE_V1_CONTAINER_STATUS), Repeated),
            f(8, "containerStatuses", Msg(&CORE_V1_CONTAINER_STATUS), Repeated),
            f(9, "qosClass", Str, OmitZero),
            f(13, "ephemeralContainerStatuses", Msg(&CORE_V1_CONTAINER_STATUS), Repeated),
            f(14, "resize", Str, OmitZero),
            f(15, "resourceClaimStatuses", Msg(&CORE_V1_POD_RESOURCE_CLAIM_STATUS), Repeated),
            f(18, "extendedResourceClaimStatus", Msg(&CORE_V1_POD_EXTENDED_RESOURCE_CLAIM_STATUS), Keep),
            f(19, "allocatedResources", Quantity, Map),
            f(20, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), Keep),
        ],
    };

    static CORE_V1_POD: Message = Message {
        name: "core.v1.Pod",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&CORE_V1_POD_SPEC), Keep),
            f(3, "status", Msg(&CORE_V1_POD_STATUS), Keep),
        ],
    };

    static CORE_V1_TAINT: Message = Message {
        name: "core.v1.Taint",
        fields: &[f(1, "key", Str, Keep), f(2, "value", Str, OmitZero), f(3, "effect", Str, Keep), f(4, "timeAdded", Time, Keep)],
    };

    static CORE_V1_CONFIG_MAP_NODE_CONFIG_SOURCE: Message = Message {
        name: "core.v1.ConfigMapNodeConfigSource",
        fields: &[
            f(1, "namespace", Str, Keep),
            f(2, "name", Str, Keep),
            f(3, "uid", Str, OmitZero),
            f(4, "resourceVersion", Str, OmitZero),
            f(5, "kubeletConfigKey", Str, Keep),
        ],
    };

    static CORE_V1_NODE_CONFIG_SOURCE: Message =
        Message { name: "core.v1.NodeConfigSource", fields: &[f(2, "configMap", Msg(&CORE_V1_CONFIG_MAP_NODE_CONFIG_SOURCE), Keep)] };

    static CORE_V1_NODE_SPEC: Message = Message {
        name: "core.v1.NodeSpec",
        fields: &[
            f(1, "podCIDR", Str, OmitZero),
            f(7, "podCIDRs", Str, Repeated),
            f(3, "providerID", Str, OmitZero),
            f(4, "unschedulable", Bool, OmitZero),
            f(5, "taints", Msg(&CORE_V1_TAINT), Repeated),
            f(6, "configSource", Msg(&CORE_V1_NODE_CONFIG_SOURCE), Keep),
            f(2, "externalID", Str, OmitZero),
        ],
    };

    static CORE_V1_NODE_CONDITION: Message = Message {
        name: "core.v1.NodeCondition",
        fields: &[
            f(1, "type", Str, Keep),
            f(2, "status", Str, Keep),
            f(3, "lastHeartbeatTime", Time, Keep),
            f(4, "lastTransitionTime", Time, Keep),
            f(5, "reason", Str, OmitZero),
            f(6, "message", Str, OmitZero),
        ],
    };

    static CORE_V1_NODE_ADDRESS: Message = Message { name: "core.v1.NodeAddress", fields: &[f(1, "type", Str, Keep), f(2, "address", Str, Keep)] };

    static CORE_V1_DAEMON_ENDPOINT: Message = Message { name: "core.v1.DaemonEndpoint", fields: &[f(1, "Port", Int32, Keep)] };

    static CORE_V1_NODE_DAEMON_ENDPOINTS: Message =
        Message { name: "core.v1.NodeDaemonEndpoints", fields: &[f(1, "kubeletEndpoint", Msg(&CORE_V1_DAEMON_ENDPOINT), Keep)] };

    static CORE_V1_NODE_SWAP_STATUS: Message = Message { name: "core.v1.NodeSwapStatus", fields: &[f(1, "capacity", Int64, Keep)] };

    static CORE_V1_NODE_SYSTEM_INFO: Message = Message {
        name: "core.v1.NodeSystemInfo",
        fields: &[
            f(1, "machineID", Str, Keep),
            f(2, "systemUUID", Str, Keep),
            f(3, "bootID", Str, Keep),
            f(4, "kernelVersion", Str, Keep),
            f(5, "osImage", Str, Keep),
            f(6, "containerRuntimeVersion", Str, Keep),
            f(7, "kubeletVersion", Str, Keep),
            f(8, "kubeProxyVersion", Str, Keep),
            f(9, "operatingSystem", Str, Keep),
            f(10, "architecture", Str, Keep),
            f(11, "swap", Msg(&CORE_V1_NODE_SWAP_STATUS), Keep),
        ],
    };

    static CORE_V1_CONTAINER_IMAGE: Message =
        Message { name: "core.v1.ContainerImage", fields: &[f(1, "names", Str, Repeated), f(2, "sizeBytes", Int64, OmitZero)] };

    static CORE_V1_ATTACHED_VOLUME: Message = Message { name: "core.v1.AttachedVolume", fields: &[f(1, "name", Str, Keep), f(2, "devicePath", Str, Keep)] };

    static CORE_V1_NODE_CONFIG_STATUS: Message = Message {
        name: "core.v1.NodeConfigStatus",
        fields: &[
            f(1, "assigned", Msg(&CORE_V1_NODE_CONFIG_SOURCE), Keep),
            f(2, "active", Msg(&CORE_V1_NODE_CONFIG_SOURCE), Keep),
            f(3, "lastKnownGood", Msg(&CORE_V1_NODE_CONFIG_SOURCE), Keep),
            f(4, "error", Str, OmitZero),
        ],
    };

    static CORE_V1_NODE_RUNTIME_HANDLER_FEATURES: Message =
        Message { name: "core.v1.NodeRuntimeHandlerFeatures", fields: &[f(1, "recursiveReadOnlyMounts", Bool, Keep), f(2, "userNamespaces", Bool, Keep)] };

    static CORE_V1_NODE_RUNTIME_HANDLER: Message =
        Message { name: "core.v1.NodeRuntimeHandler", fields: &[f(1, "name", Str, Keep), f(2, "features", Msg(&CORE_V1_NODE_RUNTIME_HANDLER_FEATURES), Keep)] };

    static CORE_V1_NODE_FEATURES: Message = Message { name: "core.v1.NodeFeatures", fields: &[f(1, "supplementalGroupsPolicy", Bool, Keep)] };

    static CORE_V1_NODE_STATUS: Message = Message {
        name: "core.v1.NodeStatus",
        fields: &[
            f(1, "capacity", Quantity, Map),
            f(2, "allocatable", Quantity, Map),
            f(3, "phase", Str, OmitZero),
            f(4, "conditions", Msg(&CORE_V1_NODE_CONDITION), Repeated),
            f(5, "addresses", Msg(&CORE_V1_NODE_ADDRESS), Repeated),
            f(6, "daemonEndpoints", Msg(&CORE_V1_NODE_DAEMON_ENDPOINTS), Keep),
            f(7, "nodeInfo", Msg(&CORE_V1_NODE_SYSTEM_INFO), Keep),
            f(8, "images", Msg(&CORE_V1_CONTAINER_IMAGE), Repeated),
            f(9, "volumesInUse", Str, Repeated),
            f(10, "volumesAttached", Msg(&CORE_V1_ATTACHED_VOLUME), Repeated),
            f(11, "config", Msg(&CORE_V1_NODE_CONFIG_STATUS), Keep),
            f(12, "runtimeHandlers", Msg(&CORE_V1_NODE_RUNTIME_HANDLER), Repeated),
            f(13, "features", Msg(&CORE_V1_NODE_FEATURES), Keep),
            f(14, "declaredFeatures", Str, Repeated),
        ],
    };

    static CORE_V1_NODE: Message = Message {
        name: "core.v1.Node",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&CORE_V1_NODE_SPEC), Keep),
            f(3, "status", Msg(&CORE_V1_NODE_STATUS), Keep),
        ],
    };

    static CORE_V1_SERVICE_PORT: Message = Message {
        name: "core.v1.ServicePort",
        fields: &[
            f(1, "name", Str, OmitZero),
            f(2, "protocol", Str, OmitZero),
            f(6, "appProtocol", Str, Keep),
            f(3, "port", Int32, Keep),
            f(4, "targetPort", IntOrString, Keep),
            f(5, "nodePort", Int32, OmitZero),
        ],
    };

    static CORE_V1_CLIENT_IP_CONFIG: Message = Message { name: "core.v1.ClientIPConfig", fields: &[f(1, "timeoutSeconds", Int32, Keep)] };

    static CORE_V1_SESSION_AFFINITY_CONFIG: Message =
        Message { name: "core.v1.SessionAffinityConfig", fields: &[f(1, "clientIP", Msg(&CORE_V1_CLIENT_IP_CONFIG), Keep)] };

    static CORE_V1_SERVICE_SPEC: Message = Message {
        name: "core.v1.ServiceSpec",
        fields: &[
            f(1, "ports", Msg(&CORE_V1_SERVICE_PORT), Repeated),
            f(2, "selector", Str, Map),
            f(3, "clusterIP", Str, OmitZero),
            f(18, "clusterIPs", Str, Repeated),
            f(4, "type", Str, OmitZero),
            f(5, "externalIPs", Str, Repeated),
            f(7, "sessionAffinity", Str, OmitZero),
            f(8, "loadBalancerIP", Str, OmitZero),
            f(9, "loadBalancerSourceRanges", Str, Repeated),
            f(10, "externalName", Str, OmitZero),
            f(11, "externalTrafficPolicy", Str, OmitZero),
            f(12, "healthCheckNodePort", Int32, OmitZero),
            f(13, "publishNotReadyAddresses", Bool, OmitZero),
            f(14, "sessionAffinityConfig", Msg(&CORE_V1_SESSION_AFFINITY_CONFIG), Keep),
            f(19, "ipFamilies", Str, Repeated),
            f(17, "ipFamilyPolicy", Str, Keep),
            f(20, "allocateLoadBalancerNodePorts", Bool, Keep),
            f(21, "loadBalancerClass", Str, Keep),
            f(22, "internalTrafficPolicy", Str, Keep),
            f(23, "trafficDistribution", Str, Keep),
        ],
    };

    static CORE_V1_PORT_STATUS: Message =
        Message { name: "core.v1.PortStatus", fields: &[f(1, "port", Int32, Keep), f(2, "protocol", Str, Keep), f(3, "error", Str, Keep)] };

    static CORE_V1_LOAD_BALANCER_INGRESS: Message = Message {
        name: "core.v1.LoadBalancerIngress",
        fields: &[f(1, "ip", Str, OmitZero), f(2, "hostname", Str, OmitZero), f(3, "ipMode", Str, Keep), f(4, "ports", Msg(&CORE_V1_PORT_STATUS), Repeated)],
    };

    static CORE_V1_LOAD_BALANCER_STATUS: Message =
        Message { name: "core.v1.LoadBalancerStatus", fields: &[f(1, "ingress", Msg(&CORE_V1_LOAD_BALANCER_INGRESS), Repeated)] };

    static META_V1_CONDITION: Message = Message {
        name: "meta.v1.Condition",
        fields: &[
            f(1, "type", Str, Keep),
            f(2, "status", Str, Keep),
            f(3, "observedGeneration", Int64, OmitZero),
            f(4, "lastTransitionTime", Time, Keep),
            f(5, "reason", Str, Keep),
            f(6, "message", Str, Keep),
        ],
    };

    static CORE_V1_SERVICE_STATUS: Message = Message {
        name: "core.v1.ServiceStatus",
        fields: &[f(1, "loadBalancer", Msg(&CORE_V1_LOAD_BALANCER_STATUS), Keep), f(2, "conditions", Msg(&META_V1_CONDITION), Repeated)],
    };

    static CORE_V1_SERVICE: Message = Message {
        name: "core.v1.Service",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&CORE_V1_SERVICE_SPEC), Keep),
            f(3, "status", Msg(&CORE_V1_SERVICE_STATUS), Keep),
        ],
    };

    static CORE_V1_OBJECT_REFERENCE: Message = Message {
        name: "core.v1.ObjectReference",
        fields: &[
            f(1, "kind", Str, OmitZero),
            f(2, "namespace", Str, OmitZero),
            f(3, "name", Str, OmitZero),
            f(4, "uid", Str, OmitZero),
            f(5, "apiVersion", Str, OmitZero),
            f(6, "resourceVersion", Str, OmitZero),
            f(7, "fieldPath", Str, OmitZero),
        ],
    };

    static CORE_V1_ENDPOINT_ADDRESS: Message = Message {
        name: "core.v1.EndpointAddress",
        fields: &[f(1, "ip", Str, Keep), f(3, "hostname", Str, OmitZero), f(4, "nodeName", Str, Keep), f(2, "targetRef", Msg(&CORE_V1_OBJECT_REFERENCE), Keep)],
    };

    static CORE_V1_ENDPOINT_PORT: Message = Message {
        name: "core.v1.EndpointPort",
        fields: &[f(1, "name", Str, OmitZero), f(2, "port", Int32, Keep), f(3, "protocol", Str, OmitZero), f(4, "appProtocol", Str, Keep)],
    };

    static CORE_V1_ENDPOINT_SUBSET: Message = Message {
        name: "core.v1.EndpointSubset",
        fields: &[
            f(1, "addresses", Msg(&CORE_V1_ENDPOINT_ADDRESS), Repeated),
            f(2, "notReadyAddresses", Msg(&CORE_V1_ENDPOINT_ADDRESS), Repeated),
            f(3, "ports", Msg(&CORE_V1_ENDPOINT_PORT), Repeated),
        ],
    };

    static CORE_V1_ENDPOINTS: Message = Message {
        name: "core.v1.Endpoints",
        fields: &[f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep), f(2, "subsets", Msg(&CORE_V1_ENDPOINT_SUBSET), Repeated)],
    };

    static CORE_V1_CONFIG_MAP: Message = Message {
        name: "core.v1.ConfigMap",
        fields: &[f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep), f(4, "immutable", Bool, Keep), f(2, "data", Str, Map), f(3, "binaryData", Bytes, Map)],
    };

    static CORE_V1_SECRET: Message = Message {
        name: "core.v1.Secret",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(5, "immutable", Bool, Keep),
            f(2, "data", Bytes, Map),
            f(4, "stringData", Str, Map),
            f(3, "type", Str, OmitZero),
        ],
    };

    static CORE_V1_EVENT_SOURCE: Message = Message { name: "core.v1.EventSource", fields: &[f(1, "component", Str, OmitZero), f(2, "host", Str, OmitZero)] };

    static CORE_V1_EVENT_SERIES: Message =
        Message { name: "core.v1.EventSeries", fields: &[f(1, "count", Int32, OmitZero), f(2, "lastObservedTime", MicroTime, Keep)] };

    static CORE_V1_EVENT: Message = Message {
        name: "core.v1.Event",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "involvedObject", Msg(&CORE_V1_OBJECT_REFERENCE), Keep),
            f(3, "reason", Str, OmitZero),
            f(4, "message", Str, OmitZero),
            f(5, "source", Msg(&CORE_V1_EVENT_SOURCE), Keep),
            f(6, "firstTimestamp", Time, Keep),
            f(7, "lastTimestamp", Time, Keep),
            f(8, "count", Int32, OmitZero),
            f(9, "type", Str, OmitZero),
            f(10, "eventTime", MicroTime, Keep),
            f(11, "series", Msg(&CORE_V1_EVENT_SERIES), Keep),
            f(12, "action", Str, OmitZero),
            f(13, "related", Msg(&CORE_V1_OBJECT_REFERENCE), Keep),
            f(14, "reportingComponent", Str, Keep),
            f(15, "reportingInstance", Str, Keep),
        ],
    };

    static CORE_V1_SERVICE_ACCOUNT: Message = Message {
        name: "core.v1.ServiceAccount",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "secrets", Msg(&CORE_V1_OBJECT_REFERENCE), Repeated),
            f(3, "imagePullSecrets", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Repeated),
            f(4, "automountServiceAccountToken", Bool, Keep),
        ],
    };

    static CORE_V1_BINDING: Message =
        Message { name: "core.v1.Binding", fields: &[f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep), f(2, "target", Msg(&CORE_V1_OBJECT_REFERENCE), Keep)] };

    static CORE_V1_POD_TEMPLATE_SPEC: Message =
        Message { name: "core.v1.PodTemplateSpec", fields: &[f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep), f(2, "spec", Msg(&CORE_V1_POD_SPEC), Keep)] };

    static APPS_V1_ROLLING_UPDATE_DEPLOYMENT: Message =
        Message { name: "apps.v1.RollingUpdateDeployment", fields: &[f(1, "maxUnavailable", IntOrString, Keep), f(2, "maxSurge", IntOrString, Keep)] };

    static APPS_V1_DEPLOYMENT_STRATEGY: Message = Message {
        name: "apps.v1.DeploymentStrategy",
        fields: &[f(1, "type", Str, OmitZero), f(2, "rollingUpdate", Msg(&APPS_V1_ROLLING_UPDATE_DEPLOYMENT), Keep)],
    };

    static APPS_V1_DEPLOYMENT_SPEC: Message = Message {
        name: "apps.v1.DeploymentSpec",
        fields: &[
            f(1, "replicas", Int32, Keep),
            f(2, "selector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(3, "template", Msg(&CORE_V1_POD_TEMPLATE_SPEC), Keep),
            f(4, "strategy", Msg(&APPS_V1_DEPLOYMENT_STRATEGY), Keep),
            f(5, "minReadySeconds", Int32, OmitZero),
            f(6, "revisionHistoryLimit", Int32, Keep),
            f(7, "paused", Bool, OmitZero),
            f(9, "progressDeadlineSeconds", Int32, Keep),
        ],
    };

    static APPS_V1_DEPLOYMENT_CONDITION: Message = Message {
        name: "apps.v1.DeploymentCondition",
        fields: &[
            f(1, "type", Str, Keep),
            f(2, "status", Str, Keep),
            f(6, "lastUpdateTime", Time, Keep),
            f(7, "lastTransitionTime", Time, Keep),
            f(4, "reason", Str, OmitZero),
            f(5, "message", Str, OmitZero),
        ],
    };

    static APPS_V1_DEPLOYMENT_STATUS: Message = Message {
        name: "apps.v1.DeploymentStatus",
        fields: &[
            f(1, "observedGeneration", Int64, OmitZero),
            f(2, "replicas", Int32, OmitZero),
            f(3, "updatedReplicas", Int32, OmitZero),
            f(7, "readyReplicas", Int32, OmitZero),
            f(4, "availableReplicas", Int32, OmitZero),
            f(5, "unavailableReplicas", Int32, OmitZero),
            f(9, "terminatingReplicas", Int32, Keep),
            f(6, "conditions", Msg(&APPS_V1_DEPLOYMENT_CONDITION), Repeated),
            f(8, "collisionCount", Int32, Keep),
        ],
    };

    static APPS_V1_DEPLOYMENT: Message = Message {
        name: "apps.v1.Deployment",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&APPS_V1_DEPLOYMENT_SPEC), Keep),
            f(3, "status", Msg(&APPS_V1_DEPLOYMENT_STATUS), Keep),
        ],
    };

    static APPS_V1_REPLICA_SET_SPEC: Message = Message {
        name: "apps.v1.ReplicaSetSpec",
        fields: &[
            f(1, "replicas", Int32, Keep),
            f(4, "minReadySeconds", Int32, OmitZero),
            f(2, "selector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(3, "template", Msg(&CORE_V1_POD_TEMPLATE_SPEC), Keep),
        ],
    };

    static APPS_V1_REPLICA_SET_CONDITION: Message = Message {
        name: "apps.v1.ReplicaSetCondition",
        fields: &[
            f(1, "type", Str, Keep),
            f(2, "status", Str, Keep),
            f(3, "lastTransitionTime", Time, Keep),
            f(4, "reason", Str, OmitZero),
            f(5, "message", Str, OmitZero),
        ],
    };

    static APPS_V1_REPLICA_SET_STATUS: Message = Message {
        name: "apps.v1.ReplicaSetStatus",
        fields: &[
            f(1, "replicas", Int32, Keep),
            f(2, "fullyLabeledReplicas", Int32, OmitZero),
            f(4, "readyReplicas", Int32, OmitZero),
            f(5, "availableReplicas", Int32, OmitZero),
            f(7, "terminatingReplicas", Int32, Keep),
            f(3, "observedGeneration", Int64, OmitZero),
            f(6, "conditions", Msg(&APPS_V1_REPLICA_SET_CONDITION), Repeated),
        ],
    };

    static APPS_V1_REPLICA_SET: Message = Message {
        name: "apps.v1.ReplicaSet",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&APPS_V1_REPLICA_SET_SPEC), Keep),
            f(3, "status", Msg(&APPS_V1_REPLICA_SET_STATUS), Keep),
        ],
    };

    static APPS_V1_ROLLING_UPDATE_DAEMON_SET: Message =
        Message { name: "apps.v1.RollingUpdateDaemonSet", fields: &[f(1, "maxUnavailable", IntOrString, Keep), f(2, "maxSurge", IntOrString, Keep)] };

    static APPS_V1_DAEMON_SET_UPDATE_STRATEGY: Message = Message {
        name: "apps.v1.DaemonSetUpdateStrategy",
        fields: &[f(1, "type", Str, OmitZero), f(2, "rollingUpdate", Msg(&APPS_V1_ROLLING_UPDATE_DAEMON_SET), Keep)],
    };

    static APPS_V1_DAEMON_SET_SPEC: Message = Message {
        name: "apps.v1.DaemonSetSpec",
        fields: &[
            f(1, "selector", Msg(&META_V1_LABEL_SELECTOR), Keep),
            f(2, "template", Msg(&CORE_V1_POD_TEMPLATE_SPEC), Keep),
            f(3, "updateStrategy", Msg(&APPS_V1_DAEMON_SET_UPDATE_STRATEGY), Keep),
            f(4, "minReadySeconds", Int32, OmitZero),
            f(6, "revisionHistoryLimit", Int32, Keep),
        ],
    };

    static APPS_V1_DAEMON_SET_CONDITION: Message = Message {
        name: "apps.v1.DaemonSetCondition",
        fields: &[
            f(1, "type", Str, Keep),
            f(2, "status", Str, Keep),
            f(3, "lastTransitionTime", Time, Keep),
            f(4, "reason", Str, OmitZero),
            f(5, "message", Str, OmitZero),
        ],
    };

    static APPS_V1_DAEMON_SET_STATUS: Message = Message {
        name: "apps.v1.DaemonSetStatus",
        fields: &[
            f(1, "currentNumberScheduled", Int32, Keep),
            f(2, "numberMisscheduled", Int32, Keep),
            f(3, "desiredNumberScheduled", Int32, Keep),
            f(4, "numberReady", Int32, Keep),
            f(5, "observedGeneration", Int64, OmitZero),
            f(6, "updatedNumberScheduled", Int32, OmitZero),
            f(7, "numberAvailable", Int32, OmitZero),
            f(8, "numberUnavailable", Int32, OmitZero),
            f(9, "collisionCount", Int32, Keep),
            f(10, "conditions", Msg(&APPS_V1_DAEMON_SET_CONDITION), Repeated),
        ],
    };

    static APPS_V1_DAEMON_SET: Message = Message {
        name: "apps.v1.DaemonSet",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&APPS_V1_DAEMON_SET_SPEC), Keep),
            f(3, "status", Msg(&APPS_V1_DAEMON_SET_STATUS), Keep),
        ],
    };

    static COORDINATION_V1_LEASE_SPEC: Message = Message {
        name: "coordination.v1.LeaseSpec",
        fields: &[
            f(1, "holderIdentity", Str, Keep),
            f(2, "leaseDurationSeconds", Int32, Keep),
            f(3, "acquireTime", MicroTime, Keep),
            f(4, "renewTime", MicroTime, Keep),
            f(5, "leaseTransitions", Int32, Keep),
            f(6, "strategy", Str, Keep),
            f(7, "preferredHolder", Str, Keep),
        ],
    };

    static COORDINATION_V1_LEASE: Message = Message {
        name: "coordination.v1.Lease",
        fields: &[f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep), f(2, "spec", Msg(&COORDINATION_V1_LEASE_SPEC), Keep)],
    };

    static DISCOVERY_V1_ENDPOINT_CONDITIONS: Message =
        Message { name: "discovery.v1.EndpointConditions", fields: &[f(1, "ready", Bool, Keep), f(2, "serving", Bool, Keep), f(3, "terminating", Bool, Keep)] };

    static DISCOVERY_V1_FOR_ZONE: Message = Message { name: "discovery.v1.ForZone", fields: &[f(1, "name", Str, Keep)] };

    static DISCOVERY_V1_FOR_NODE: Message = Message { name: "discovery.v1.ForNode", fields: &[f(1, "name", Str, Keep)] };

    static DISCOVERY_V1_ENDPOINT_HINTS: Message = Message {
        name: "discovery.v1.EndpointHints",
        fields: &[f(1, "forZones", Msg(&DISCOVERY_V1_FOR_ZONE), Repeated), f(2, "forNodes", Msg(&DISCOVERY_V1_FOR_NODE), Repeated)],
    };

    static DISCOVERY_V1_ENDPOINT: Message = Message {
        name: "discovery.v1.Endpoint",
        fields: &[
            f(1, "addresses", Str, Repeated),
            f(2, "conditions", Msg(&DISCOVERY_V1_ENDPOINT_CONDITIONS), Keep),
            f(3, "hostname", Str, Keep),
            f(4, "targetRef", Msg(&CORE_V1_OBJECT_REFERENCE), Keep),
            f(5, "deprecatedTopology", Str, Map),
            f(6, "nodeName", Str, Keep),
            f(7, "zone", Str, Keep),
            f(8, "hints", Msg(&DISCOVERY_V1_ENDPOINT_HINTS), Keep),
        ],
    };

    static DISCOVERY_V1_ENDPOINT_PORT: Message = Message {
        name: "discovery.v1.EndpointPort",
        fields: &[f(1, "name", Str, Keep), f(2, "protocol", Str, Keep), f(3, "port", Int32, Keep), f(4, "appProtocol", Str, Keep)],
    };

    static DISCOVERY_V1_ENDPOINT_SLICE: Message = Message {
        name: "discovery.v1.EndpointSlice",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(4, "addressType", Str, Keep),
            f(2, "endpoints", Msg(&DISCOVERY_V1_ENDPOINT), Repeated),
            f(3, "ports", Msg(&DISCOVERY_V1_ENDPOINT_PORT), Repeated),
        ],
    };

    static AUTOSCALING_V1_SCALE_SPEC: Message = Message { name: "autoscaling.v1.ScaleSpec", fields: &[f(1, "replicas", Int32, OmitZero)] };

    static AUTOSCALING_V1_SCALE_STATUS: Message =
        Message { name: "autoscaling.v1.ScaleStatus", fields: &[f(1, "replicas", Int32, Keep), f(2, "selector", Str, OmitZero)] };

    static AUTOSCALING_V1_SCALE: Message = Message {
        name: "autoscaling.v1.Scale",
        fields: &[
            f(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
            f(2, "spec", Msg(&AUTOSCALING_V1_SCALE_SPEC), Keep),
            f(3, "status", Msg(&AUTOSCALING_V1_SCALE_STATUS), Keep),
        ],
    };

    static META_V1_PRECONDITIONS: Message = Message { name: "meta.v1.Preconditions", fields: &[f(1, "uid", Str, Keep), f(2, "resourceVersion", Str, Keep)] };

    static META_V1_DELETE_OPTIONS: Message = Message {
        name: "meta.v1.DeleteOptions",
        fields: &[
            f(1, "gracePeriodSeconds", Int64, Keep),
            f(2, "preconditions", Msg(&META_V1_PRECONDITIONS), Keep),
            f(3, "orphanDependents", Bool, Keep),
            f(4, "propagationPolicy", Str, Keep),
            f(5, "dryRun", Str, Repeated),
            f(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool, Keep),
        ],
    };
}

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
        let body = envelope("batch/v1", "Job", &[object_meta("j", "", &[])]);
        let e = decode(&body).unwrap_err().to_string();
        assert!(e.contains("batch/v1") && e.contains("Job") && e.contains("JSON"), "{e}");
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
