//! MQTT 5.0 reason codes (spec 2.4), also used to model MQTT 3.1.1 return codes.
//!
//! MQTT 3.1.1 CONNACK return codes and SUBACK return codes are mapped onto the
//! 5.0 codes with the same meaning when decoding, and back when encoding:
//!
//! | 3.1.1 CONNACK | ReasonCode                      |
//! |---------------|---------------------------------|
//! | 0             | `Success`                       |
//! | 1             | `UnsupportedProtocolVersion`    |
//! | 2             | `ClientIdentifierNotValid`      |
//! | 3             | `ServerUnavailable`             |
//! | 4             | `BadUserNameOrPassword`         |
//! | 5             | `NotAuthorized`                 |
//!
//! Any other 5.0 code sent to a 3.1.1 client in a CONNACK is mapped to the
//! closest 3.1.1 code by [`ReasonCode::to_v3_connack`].

/// A reason code. The numeric value is the byte on the wire in MQTT 5.0.
///
/// `Success`, `NormalDisconnection` and `GrantedQoS0` all have value 0; they are
/// distinct variants because their meaning depends on the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    Success,
    NormalDisconnection,
    GrantedQoS0,
    GrantedQoS1,
    GrantedQoS2,
    DisconnectWithWillMessage,
    NoMatchingSubscribers,
    NoSubscriptionExisted,
    ContinueAuthentication,
    ReAuthenticate,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUserNameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    ServerBusy,
    Banned,
    ServerShuttingDown,
    BadAuthenticationMethod,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicFilterInvalid,
    TopicNameInvalid,
    PacketIdentifierInUse,
    PacketIdentifierNotFound,
    ReceiveMaximumExceeded,
    TopicAliasInvalid,
    PacketTooLarge,
    MessageRateTooHigh,
    QuotaExceeded,
    AdministrativeAction,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    SharedSubscriptionsNotSupported,
    ConnectionRateExceeded,
    MaximumConnectTime,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
}

impl ReasonCode {
    /// The byte on the wire in MQTT 5.0.
    pub const fn value(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success | NormalDisconnection | GrantedQoS0 => 0x00,
            GrantedQoS1 => 0x01,
            GrantedQoS2 => 0x02,
            DisconnectWithWillMessage => 0x04,
            NoMatchingSubscribers => 0x10,
            NoSubscriptionExisted => 0x11,
            ContinueAuthentication => 0x18,
            ReAuthenticate => 0x19,
            UnspecifiedError => 0x80,
            MalformedPacket => 0x81,
            ProtocolError => 0x82,
            ImplementationSpecificError => 0x83,
            UnsupportedProtocolVersion => 0x84,
            ClientIdentifierNotValid => 0x85,
            BadUserNameOrPassword => 0x86,
            NotAuthorized => 0x87,
            ServerUnavailable => 0x88,
            ServerBusy => 0x89,
            Banned => 0x8A,
            ServerShuttingDown => 0x8B,
            BadAuthenticationMethod => 0x8C,
            KeepAliveTimeout => 0x8D,
            SessionTakenOver => 0x8E,
            TopicFilterInvalid => 0x8F,
            TopicNameInvalid => 0x90,
            PacketIdentifierInUse => 0x91,
            PacketIdentifierNotFound => 0x92,
            ReceiveMaximumExceeded => 0x93,
            TopicAliasInvalid => 0x94,
            PacketTooLarge => 0x95,
            MessageRateTooHigh => 0x96,
            QuotaExceeded => 0x97,
            AdministrativeAction => 0x98,
            PayloadFormatInvalid => 0x99,
            RetainNotSupported => 0x9A,
            QoSNotSupported => 0x9B,
            UseAnotherServer => 0x9C,
            ServerMoved => 0x9D,
            SharedSubscriptionsNotSupported => 0x9E,
            ConnectionRateExceeded => 0x9F,
            MaximumConnectTime => 0xA0,
            SubscriptionIdentifiersNotSupported => 0xA1,
            WildcardSubscriptionsNotSupported => 0xA2,
        }
    }

    /// True for codes >= 0x80 (failure).
    pub const fn is_error(self) -> bool {
        self.value() >= 0x80
    }

    /// The 3.1.1 CONNACK return code with the closest meaning.
    pub const fn to_v3_connack(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            BadUserNameOrPassword => 4,
            NotAuthorized | Banned | BadAuthenticationMethod => 5,
            _ => 3,
        }
    }
}

/// The codes each packet may carry in MQTT 5.0 (spec 3.x.2.1). Value 0 has
/// one meaning per packet, so a table also decides which zero variant a
/// decoded 0 becomes.
pub mod allowed {
    use super::ReasonCode::{self, *};

    /// CONNACK (3.2.2.2).
    pub const CONNACK: &[ReasonCode] = &[
        Success,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        BadAuthenticationMethod,
        TopicNameInvalid,
        PacketTooLarge,
        QuotaExceeded,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        ConnectionRateExceeded,
    ];

    /// PUBACK and PUBREC (3.4.2.1, 3.5.2.1).
    pub const PUBACK: &[ReasonCode] = &[
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ];

    /// PUBREL and PUBCOMP (3.6.2.1, 3.7.2.1).
    pub const PUBREL: &[ReasonCode] = &[Success, PacketIdentifierNotFound];

    /// SUBACK (3.9.3).
    pub const SUBACK: &[ReasonCode] = &[
        GrantedQoS0,
        GrantedQoS1,
        GrantedQoS2,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        SharedSubscriptionsNotSupported,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];

    /// UNSUBACK (3.11.3).
    pub const UNSUBACK: &[ReasonCode] = &[
        Success,
        NoSubscriptionExisted,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
    ];

    /// DISCONNECT (3.14.2.1).
    pub const DISCONNECT: &[ReasonCode] = &[
        NormalDisconnection,
        DisconnectWithWillMessage,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        NotAuthorized,
        ServerBusy,
        ServerShuttingDown,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ];

    /// AUTH (3.15.2.1).
    pub const AUTH: &[ReasonCode] = &[Success, ContinueAuthentication, ReAuthenticate];

    /// 3.1.1 SUBACK return codes.
    pub const SUBACK_V3: &[ReasonCode] = &[GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError];

    /// 3.1.1 CONNACK return codes, indexed by the byte on the wire.
    pub const CONNACK_V3: &[ReasonCode] = &[
        Success,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        ServerUnavailable,
        BadUserNameOrPassword,
        NotAuthorized,
    ];
}

impl ReasonCode {
    /// The code in `table` whose wire value is `v` (see [`allowed`]).
    pub fn from_value(v: u8, table: &[ReasonCode]) -> Option<ReasonCode> {
        table.iter().copied().find(|c| c.value() == v)
    }

    /// Decodes a 3.1.1 CONNACK return code (0..=5).
    pub fn from_v3_connack(v: u8) -> Option<ReasonCode> {
        allowed::CONNACK_V3.get(usize::from(v)).copied()
    }

    /// The 3.1.1 SUBACK return code: the granted QoS, or 0x80 for any failure.
    pub const fn to_v3_suback(self) -> u8 {
        match self {
            ReasonCode::GrantedQoS0 => 0,
            ReasonCode::GrantedQoS1 => 1,
            ReasonCode::GrantedQoS2 => 2,
            _ => 0x80,
        }
    }
}
