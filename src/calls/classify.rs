//! Tells what a channel is from its name: an operator's extension, a trunk, a Local half,
//! deskhook's own Snoop, or something else. Direction of a call is derived from this,
//! never from dialplan context names (FreePBX renames contexts).

use regex::Regex;

/// What a channel stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelClass {
    /// An operator's phone; the extension number.
    Extension(String),
    /// The carrier side; the trunk's endpoint resource.
    Trunk(String),
    /// One half of a Local channel pair (`Local/101@from-queue-00000000;1`).
    Local { exten: String, context: String, half: LocalHalf },
    /// ARI snoop channels: never a party to a call.
    Snoop,
    /// Anything else (Message/, an endpoint that is neither extension nor trunk, …).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LocalHalf {
    One,
    Two,
}

pub(crate) use crate::ari::model::split_channel_name;

/// Decides extension / trunk from endpoint resources, per `pbx.extension_pattern` and `pbx.trunks`.
#[derive(Debug, Clone)]
pub struct Classifier {
    extension_pattern: Regex,
    trunks: Vec<String>,
}

impl Classifier {
    pub(crate) fn new(extension_pattern: &str, trunks: &[String]) -> Result<Self, regex::Error> {
        Ok(Self { extension_pattern: Regex::new(extension_pattern)?, trunks: trunks.to_vec() })
    }

    /// Class of an endpoint by its resource name (`101`, `provider`).
    pub(crate) fn endpoint(&self, resource: &str) -> ChannelClass {
        if self.trunks.iter().any(|trunk| trunk == resource) {
            return ChannelClass::Trunk(resource.to_string());
        }
        if self.extension_pattern.is_match(resource) {
            return ChannelClass::Extension(resource.to_string());
        }
        if self.trunks.is_empty() && !resource.is_empty() {
            return ChannelClass::Trunk(resource.to_string());
        }
        ChannelClass::Other
    }

    /// Class of a channel by its name.
    pub(crate) fn channel(&self, name: &str) -> ChannelClass {
        let Some((technology, resource)) = split_channel_name(name) else {
            return ChannelClass::Other;
        };
        if technology.eq_ignore_ascii_case("Snoop") {
            return ChannelClass::Snoop;
        }
        if technology.eq_ignore_ascii_case("Local") {
            return parse_local(resource).unwrap_or(ChannelClass::Other);
        }
        if technology.eq_ignore_ascii_case("Message")
            || technology.eq_ignore_ascii_case("Announcer")
            || technology.eq_ignore_ascii_case("Recorder")
            || technology.eq_ignore_ascii_case("UnicastRTP")
            || technology.eq_ignore_ascii_case("MulticastRTP")
            || technology.eq_ignore_ascii_case("ConfBridge")
        {
            return ChannelClass::Other;
        }
        self.endpoint(resource)
    }
}

/// `101@from-queue-00000000;1` → Local { exten 101, context from-queue, half 1 }.
fn parse_local(rest: &str) -> Option<ChannelClass> {
    let (body, half) = rest.rsplit_once(';')?;
    let half = match half {
        "1" => LocalHalf::One,
        "2" => LocalHalf::Two,
        _ => return None,
    };
    let (exten, context_and_id) = body.split_once('@')?;
    let context = match context_and_id.rfind('-') {
        Some(dash) => &context_and_id[..dash],
        None => context_and_id,
    };
    Some(ChannelClass::Local { exten: exten.to_string(), context: context.to_string(), half })
}

/// The extension a queue member interface or dial string names:
/// `PJSIP/101` → 101, `Local/101@from-queue/n` → 101, `SIP/102` → 102, `101` → 101.
pub(crate) fn extension_of_interface(interface: &str) -> Option<String> {
    let interface = interface.trim();
    if interface.is_empty() {
        return None;
    }
    let rest = match interface.split_once('/') {
        Some((_, rest)) => rest,
        None => interface,
    };
    let rest = rest.split('/').next().unwrap_or(rest);
    let exten = rest.split('@').next().unwrap_or(rest);
    let exten = exten.split(['&', ',']).next().unwrap_or(exten).trim();
    (!exten.is_empty()).then(|| exten.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Classifier {
        Classifier::new(r"^\d{2,6}$", &["provider".to_string()]).expect("valid")
    }

    #[test]
    fn channel_names_split_into_technology_and_resource() {
        assert_eq!(split_channel_name("PJSIP/provider-0000000a"), Some(("PJSIP", "provider")));
        assert_eq!(split_channel_name("PJSIP/101-0000000b"), Some(("PJSIP", "101")));
        assert_eq!(split_channel_name("SIP/my-trunk-00000001"), Some(("SIP", "my-trunk")));
        assert_eq!(split_channel_name("DAHDI/1-1"), Some(("DAHDI", "1")));
        assert_eq!(split_channel_name("nonsense"), None);
    }

    #[test]
    fn lab_endpoints_classify() {
        let classifier = lab();
        assert_eq!(classifier.channel("PJSIP/101-0000000b"), ChannelClass::Extension("101".into()));
        assert_eq!(classifier.channel("PJSIP/provider-0000000a"), ChannelClass::Trunk("provider".into()));
        assert_eq!(classifier.channel("Snoop/1795237329.45-00000000"), ChannelClass::Snoop);
        assert_eq!(
            classifier.channel("Local/102@from-queue-00000001;2"),
            ChannelClass::Local { exten: "102".into(), context: "from-queue".into(), half: LocalHalf::Two }
        );
        // A named endpoint that is neither in `trunks` nor an extension is not a party.
        assert_eq!(classifier.channel("PJSIP/fax-00000001"), ChannelClass::Other);
    }

    #[test]
    fn without_a_trunk_list_every_non_extension_is_a_trunk() {
        let classifier = Classifier::new(r"^\d{2,6}$", &[]).expect("valid");
        assert_eq!(classifier.channel("PJSIP/sipnet-00000001"), ChannelClass::Trunk("sipnet".into()));
        assert_eq!(classifier.channel("PJSIP/2001-00000001"), ChannelClass::Extension("2001".into()));
        // A numeric trunk name must be listed explicitly; the list wins over the pattern.
        let numeric = Classifier::new(r"^\d{2,6}$", &["5060".to_string()]).expect("valid");
        assert_eq!(numeric.channel("PJSIP/5060-00000001"), ChannelClass::Trunk("5060".into()));
    }

    #[test]
    fn member_interfaces_name_extensions() {
        assert_eq!(extension_of_interface("PJSIP/101"), Some("101".into()));
        assert_eq!(extension_of_interface("Local/103@from-queue/n"), Some("103".into()));
        assert_eq!(extension_of_interface("SIP/102"), Some("102".into()));
        assert_eq!(extension_of_interface("89161234567@provider"), Some("89161234567".into()));
        assert_eq!(extension_of_interface(""), None);
    }
}
