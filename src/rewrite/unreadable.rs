//! Why a request could not be read the way the gateway reads it.
//!
//! With the guard on, such a request is refused (400 `unreadable_request`) instead of
//! passed: a name modelmap did not see is a name it did not check. The reasons are a
//! fixed set, so they can label a metric without letting clients grow its cardinality.

/// A part of a request that may carry a model name and that modelmap cannot read
/// exactly as LiteLLM would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The body is compressed or otherwise encoded (`Content-Encoding`).
    ContentEncoding,
    /// The content type is repeated, not Latin-1 text, or read differently by
    /// LiteLLM's body reader and Starlette's form parser.
    ContentType,
    /// A form's `charset` is not UTF-8: names and values would decode differently.
    Charset,
    /// A multipart boundary that is missing, empty or too long.
    Boundary,
    /// A multipart part's header block too large, or malformed.
    PartHeaders,
    /// JSON nested deeper than modelmap follows.
    Nesting,
    /// A model value (or comma list) longer than modelmap looks up.
    NameLength,
    /// A JSON string that does not decode (lone surrogates, raw control characters).
    Escapes,
    /// A URL with more segments, or a query with more parameters, than are checked.
    Url,
    /// A form field too long to hold while looking for a model field.
    FormField,
}

impl Unreadable {
    pub const ALL: [Unreadable; 10] = [
        Unreadable::ContentEncoding,
        Unreadable::ContentType,
        Unreadable::Charset,
        Unreadable::Boundary,
        Unreadable::PartHeaders,
        Unreadable::Nesting,
        Unreadable::NameLength,
        Unreadable::Escapes,
        Unreadable::Url,
        Unreadable::FormField,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::ContentEncoding => "content_encoding",
            Unreadable::ContentType => "content_type",
            Unreadable::Charset => "charset",
            Unreadable::Boundary => "boundary",
            Unreadable::PartHeaders => "part_headers",
            Unreadable::Nesting => "nesting",
            Unreadable::NameLength => "name_length",
            Unreadable::Escapes => "escapes",
            Unreadable::Url => "url",
            Unreadable::FormField => "form_field",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Unreadable::ContentEncoding => {
                "the request body is encoded (Content-Encoding); send it uncompressed"
            }
            Unreadable::ContentType => {
                "the Content-Type header is repeated or cannot be read unambiguously"
            }
            Unreadable::Charset => "the form's charset is not UTF-8",
            Unreadable::Boundary => "the multipart boundary is missing or too long",
            Unreadable::PartHeaders => "a multipart part's headers are too large or malformed",
            Unreadable::Nesting => "the JSON body is nested too deeply",
            Unreadable::NameLength => "a model value is too long",
            Unreadable::Escapes => "a model value is not a valid JSON string",
            Unreadable::Url => "the URL has too many path segments or query parameters",
            Unreadable::FormField => "a form field name is too long",
        }
    }
}
