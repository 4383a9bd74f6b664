//! RocketMQ's SQL-92 property filter, on the broker side: the expression
//! language (compile, validate, evaluate) is the protocol's
//! (`skylark_codec::filter`, re-exported here, shared with the client); this
//! module plugs a compiled [`SqlFilter`] into the store's read path as its
//! [`RecordFilter`].

pub use skylark_codec::filter::*;

use crate::message_store::{DecodedMessage, RecordFilter};

/// The store runs the filter during a read: it decodes each record whose tag
/// hash matched and asks the filter about its properties.
impl RecordFilter for SqlFilter {
    fn accepts(&self, message: &DecodedMessage<'_>) -> bool {
        self.matches(|name| message.property(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_record_is_judged_by_its_tag_and_properties() {
        use crate::message_store::record::{decode, encode_into, AppendMessage, Placement};
        let props = vec![("a".to_string(), "6".to_string())];
        let msg = AppendMessage {
            tags: Some("A"),
            properties: &props,
            ..AppendMessage::for_test("T", b"body")
        };
        let mut buf = vec![0u8; msg.encoded_size()];
        let at = Placement {
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 1,
        };
        encode_into(&msg, at, &mut buf);
        let (m, _) = decode(&buf).unwrap();
        let accepts = |expr: &str| SqlFilter::compile(expr).unwrap().accepts(&m);
        assert!(accepts("TAGS IN ('A') AND a > 5"));
        assert!(!accepts("TAGS = 'B'"));
        assert!(!accepts("a > 6"));
        assert!(!accepts("missing = 'x'"), "a missing property is NULL");
    }
}
