//! Every wire type survives the codec unchanged, and the codec rejects what it must.

use proptest::prelude::*;
use securestore_proto::codec::{decode, encode};
use securestore_proto::handshake::{
    Accepted, AdminAnswer, AdminRequest, Hello, HelloReply, PROTOCOL_VERSION, Purpose,
};
use securestore_proto::tarpc::{ClientMessage, Response, context};
use securestore_proto::{
    DeleteOptions, GetOptions, Item, KeychainAccessible, SecretString, SecureStoreRequest,
    SecureStoreResponse, ServiceError, SetOptions,
};
use serde::{Serialize, de::DeserializeOwned};

const LIMIT: usize = 1 << 20;

/// Encoding, decoding and encoding again yields the same bytes: nothing is lost or altered.
fn assert_round_trip<T: Serialize + DeserializeOwned>(value: &T) {
    let bytes = encode(value, LIMIT).expect("encode");
    let decoded: T = decode(&bytes, LIMIT).expect("decode");
    assert_eq!(encode(&decoded, LIMIT).expect("re-encode"), bytes);
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "[A-Za-z0-9._-]{1,20}", Just(String::new())]
}

fn secret() -> impl Strategy<Value = SecretString> {
    text().prop_map(SecretString::new)
}

fn class() -> impl Strategy<Value = KeychainAccessible> {
    (0u8..7).prop_map(|n| KeychainAccessible::try_from(n).expect("0..7 are classes"))
}

fn service_error() -> impl Strategy<Value = ServiceError> {
    prop_oneof![
        Just(ServiceError::InvalidKey),
        (any::<u64>(), any::<u64>())
            .prop_map(|(len, limit)| ServiceError::KeyTooLong { len, limit }),
        text().prop_map(|reason| ServiceError::InvalidService { reason }),
        text().prop_map(|reason| ServiceError::InvalidProject { reason }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, limit)| ServiceError::ValueTooLarge { size, limit }),
        text().prop_map(|reason| ServiceError::Refused { reason }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(client, daemon)| ServiceError::UnsupportedVersion { client, daemon }),
        (text(), text()).prop_map(|(key, service)| ServiceError::CannotDecrypt { key, service }),
        Just(ServiceError::StorageFull),
        text().prop_map(|message| ServiceError::Storage { message }),
        text().prop_map(|project| ServiceError::AlreadyRegistered { project }),
        any::<u64>().prop_map(|limit| ServiceError::TooManyProjects { limit }),
        Just(ServiceError::ShuttingDown),
        Just(ServiceError::OutcomeUnknown),
    ]
}

fn admin_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        text().prop_map(|project| AdminRequest::AddProject { project }),
        (text(), proptest::option::of(secret()))
            .prop_map(|(project, token)| AdminRequest::RemoveProject { project, token }),
        Just(AdminRequest::ListProjects),
        (text(), any::<bool>())
            .prop_map(|(project, wipe)| AdminRequest::ReplaceProject { project, wipe }),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    let purpose = prop_oneof![
        (text(), proptest::option::of(secret()))
            .prop_map(|(project, token)| Purpose::Project { project, token }),
        admin_request().prop_map(Purpose::Admin),
    ];
    (any::<u16>(), purpose).prop_map(|(protocol_version, purpose)| Hello {
        protocol_version,
        purpose,
    })
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        (any::<u16>(), any::<u32>()).prop_map(|(protocol_version, max_value_bytes)| {
            HelloReply::Accepted(Accepted {
                protocol_version,
                max_value_bytes,
            })
        }),
        service_error().prop_map(HelloReply::Rejected),
        secret().prop_map(|token| HelloReply::Admin(AdminAnswer::Added { token })),
        any::<bool>().prop_map(|existed| HelloReply::Admin(AdminAnswer::Removed { existed })),
        proptest::collection::vec(text(), 0..5)
            .prop_map(|p| HelloReply::Admin(AdminAnswer::Projects(p))),
    ]
}

fn request() -> impl Strategy<Value = SecureStoreRequest> {
    let service = || proptest::option::of(text());
    prop_oneof![
        (text(), secret(), service(), class()).prop_map(|(key, value, keychain_service, class)| {
            SecureStoreRequest::SetItem {
                key,
                value,
                options: SetOptions {
                    keychain_service,
                    keychain_accessible: class,
                },
            }
        }),
        (text(), service()).prop_map(|(key, keychain_service)| SecureStoreRequest::GetItem {
            key,
            options: GetOptions { keychain_service },
        }),
        (text(), service()).prop_map(|(key, keychain_service)| SecureStoreRequest::DeleteItem {
            key,
            options: DeleteOptions { keychain_service },
        }),
    ]
}

fn response() -> impl Strategy<Value = SecureStoreResponse> {
    let item = (secret(), class()).prop_map(|(value, accessible)| Item { value, accessible });
    prop_oneof![
        prop_oneof![Just(Ok(())), service_error().prop_map(Err)]
            .prop_map(SecureStoreResponse::SetItem),
        prop_oneof![
            proptest::option::of(item).prop_map(Ok),
            service_error().prop_map(Err)
        ]
        .prop_map(SecureStoreResponse::GetItem),
        prop_oneof![Just(Ok(())), service_error().prop_map(Err)]
            .prop_map(SecureStoreResponse::DeleteItem),
    ]
}

proptest! {
    #[test]
    fn handshake_messages_round_trip(hello in hello(), reply in hello_reply()) {
        assert_round_trip(&hello);
        assert_round_trip(&reply);
    }

    #[test]
    fn service_errors_round_trip_exactly(err in service_error()) {
        let bytes = encode(&err, LIMIT).expect("encode");
        prop_assert_eq!(decode::<ServiceError>(&bytes, LIMIT).expect("decode"), err);
    }

    #[test]
    fn tarpc_messages_round_trip(request in request(), response in response(), id in any::<u64>()) {
        let mut ctx = context::current();
        ctx.deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let message = ClientMessage::Request(securestore_proto::tarpc::Request { context: ctx, id, message: request });
        let bytes = encode(&message, LIMIT).expect("encode");
        let decoded: ClientMessage<SecureStoreRequest> = decode(&bytes, LIMIT).expect("decode");
        match (&message, &decoded) {
            (ClientMessage::Request(a), ClientMessage::Request(b)) => {
                prop_assert_eq!(a.id, b.id);
                prop_assert_eq!(encode(&a.message, LIMIT).expect("a"), encode(&b.message, LIMIT).expect("b"));
            }
            _ => prop_assert!(false, "variant changed"),
        }
        assert_round_trip(&Response { request_id: id, message: Ok(response) });
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<Hello>(&bytes, LIMIT);
        let _ = decode::<ClientMessage<SecureStoreRequest>>(&bytes, LIMIT);
        let _ = decode::<Response<SecureStoreResponse>>(&bytes, LIMIT);
    }
}

#[test]
fn an_unknown_accessibility_class_is_a_decode_error() {
    let mut bytes = encode(&KeychainAccessible::WhenUnlocked, LIMIT).expect("encode");
    assert_eq!(bytes, [5]);
    bytes[0] = 7;
    assert!(decode::<KeychainAccessible>(&bytes, LIMIT).is_err());
}

#[test]
fn the_hello_helpers_build_what_they_say() {
    let hello = Hello::project("@o/p", None);
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert!(
        matches!(hello.purpose, Purpose::Project { ref project, token: None } if project == "@o/p")
    );
    assert!(matches!(
        Hello::admin(AdminRequest::ListProjects).purpose,
        Purpose::Admin(AdminRequest::ListProjects)
    ));
}
