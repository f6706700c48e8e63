//! A posted portal form (`application/x-www-form-urlencoded`), read once.

use std::borrow::Cow;

pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v): (Cow<'_, str>, Cow<'_, str>)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim())
    }

    /// Every value of `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_repeated_encoded_and_blank_fields() {
        let form = Form::parse(b"csrf=a%2Bb&event_types=x&event_types=y&url=+https%3A%2F%2Fh%2F+&rate=&on=1");
        assert_eq!(form.get("csrf"), Some("a+b"));
        assert_eq!(form.all("event_types"), ["x", "y"]);
        assert_eq!(form.get("url"), Some("https://h/"));
        assert_eq!(form.get("rate"), Some(""));
        assert!(form.checked("on") && !form.checked("off"));
        assert_eq!(Form::parse(b"\xff=\xfe").get("x"), None);
    }
}
