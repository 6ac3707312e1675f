use napi_derive::napi;

/// `text` with every URL's userinfo and every password this process was configured with hidden
/// (see `core::secrets`): the JS layer passes its own messages through it too.
#[napi]
pub fn redact_secrets(text: String) -> String {
    crate::core::secrets::scrub(&text).into_owned()
}
