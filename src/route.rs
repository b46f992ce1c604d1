//! Route families: a fixed, small set of names for metrics and logs.

/// What kind of gateway endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
    Images,
    Audio,
    Moderations,
    Rerank,
    Models,
    Files,
    /// Gemini-style `models/{model}:generateContent` and friends.
    Gemini,
    Other,
}

impl Family {
    /// Number of families (for tables indexed by `family as usize`).
    pub const COUNT: usize = Family::Other as usize + 1;

    pub fn of(path: &str) -> Family {
        let p = path.split('?').next().unwrap_or(path);
        let has = |s: &str| p.contains(s);
        if has(":generateContent") || has(":streamGenerateContent") || has(":countTokens") {
            Family::Gemini
        } else if has("/chat/completions") {
            Family::Chat
        } else if has("/completions") {
            Family::Completions
        } else if has("/embeddings") {
            Family::Embeddings
        } else if has("/responses") {
            Family::Responses
        } else if has("/messages") {
            Family::Messages
        } else if has("/images/") {
            Family::Images
        } else if has("/audio/") {
            Family::Audio
        } else if has("/moderations") {
            Family::Moderations
        } else if has("/rerank") {
            Family::Rerank
        } else if has("/files") {
            Family::Files
        } else if p.ends_with("/models") || has("/models/") {
            Family::Models
        } else {
            Family::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Chat => "chat",
            Family::Completions => "completions",
            Family::Embeddings => "embeddings",
            Family::Responses => "responses",
            Family::Messages => "messages",
            Family::Images => "images",
            Family::Audio => "audio",
            Family::Moderations => "moderations",
            Family::Rerank => "rerank",
            Family::Models => "models",
            Family::Files => "files",
            Family::Gemini => "gemini",
            Family::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Family;

    #[test]
    fn families() {
        assert_eq!(Family::of("/v1/chat/completions"), Family::Chat);
        assert_eq!(Family::of("/chat/completions?x=1"), Family::Chat);
        assert_eq!(
            Family::of("/openai/deployments/gpt/chat/completions"),
            Family::Chat
        );
        assert_eq!(Family::of("/v1/completions"), Family::Completions);
        assert_eq!(Family::of("/v1/messages/count_tokens"), Family::Messages);
        assert_eq!(Family::of("/v1/models"), Family::Models);
        assert_eq!(
            Family::of("/v1beta/models/gemini:generateContent"),
            Family::Gemini
        );
        assert_eq!(Family::of("/health"), Family::Other);
    }
}
