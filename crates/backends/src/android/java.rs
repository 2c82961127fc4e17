//! Typed wrappers over the Java classes the Android backend calls, one struct per class, so every
//! JNI class name, method name and signature lives here and nowhere else.
//!
//! Each wrapper borrows a reference to its Java object and takes the thread's [`Env`] per call. All
//! calls go through jni's checked `call_method` / `new_object`, which verify argument counts and
//! types against the signature, so this module needs no `unsafe`. A Java exception comes back as
//! [`Error::CaughtJavaException`] (class name and message), caught and cleared by [`caught`].

use jni::errors::{Error, Result};
use jni::objects::{JByteArray, JObject, JObjectArray, JString};
use jni::{Env, JValue, jni_sig, jni_str};

/// Turns a pending Java exception into [`Error::CaughtJavaException`] and clears it, so the thread
/// may make further JNI calls; passes other errors through.
pub(super) fn caught(env: &Env<'_>, err: Error) -> Error {
    match err {
        Error::JavaException => env.exception_catch().err().unwrap_or(Error::JavaException),
        other => other,
    }
}

/// Runs `call` and clears any exception it raised (see [`caught`]).
pub(super) fn checked<'local, T>(
    env: &mut Env<'local>,
    call: impl FnOnce(&mut Env<'local>) -> Result<T>,
) -> Result<T> {
    call(env).map_err(|err| caught(env, err))
}

/// `byte[]` from Rust bytes.
pub(super) fn byte_array<'local>(
    env: &mut Env<'local>,
    bytes: &[u8],
) -> Result<JByteArray<'local>> {
    env.byte_array_from_slice(bytes)
}

/// Overwrites a `byte[]` with zeros, for arrays that held a secret.
pub(super) fn wipe(env: &Env<'_>, array: &JByteArray<'_>) -> Result<()> {
    let len = array.len(env)?;
    array.set_region(env, 0, &vec![0i8; len])
}

/// `char[]` from a Rust string (Java takes passwords as `char[]`), or `null` for none.
pub(super) fn char_array<'local>(
    env: &mut Env<'local>,
    text: Option<&str>,
) -> Result<JObject<'local>> {
    let Some(text) = text else {
        return Ok(JObject::null());
    };
    let string = env.new_string(text)?;
    env.call_method(&string, jni_str!("toCharArray"), jni_sig!("()[C"), &[])?
        .l()
}

fn object_to_bytes(env: &mut Env<'_>, object: JObject<'_>) -> Result<Vec<u8>> {
    let array = env.cast_local::<JByteArray<'_>>(object)?;
    env.convert_byte_array(&array)
}

/// `java.security.KeyStore`.
pub(super) struct KeyStore<'a>(pub(super) &'a JObject<'a>);

impl KeyStore<'_> {
    /// `KeyStore.getInstance(type)`.
    pub(super) fn get_instance<'local>(
        env: &mut Env<'local>,
        kind: &str,
    ) -> Result<JObject<'local>> {
        let kind = env.new_string(kind)?;
        env.call_static_method(
            jni_str!("java/security/KeyStore"),
            jni_str!("getInstance"),
            jni_sig!("(Ljava/lang/String;)Ljava/security/KeyStore;"),
            &[JValue::Object(&kind)],
        )?
        .l()
    }

    /// `load(InputStream, char[])`; `null` for both makes an empty store (or opens AndroidKeyStore).
    pub(super) fn load(
        &self,
        env: &mut Env<'_>,
        stream: &JObject<'_>,
        password: &JObject<'_>,
    ) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("load"),
            jni_sig!("(Ljava/io/InputStream;[C)V"),
            &[JValue::Object(stream), JValue::Object(password)],
        )?
        .v()
    }

    /// `getKey(alias, password)`: the key, or `null` when there is no such entry.
    pub(super) fn get_key<'local>(
        &self,
        env: &mut Env<'local>,
        alias: &str,
        password: &JObject<'_>,
    ) -> Result<JObject<'local>> {
        let alias = env.new_string(alias)?;
        env.call_method(
            self.0,
            jni_str!("getKey"),
            jni_sig!("(Ljava/lang/String;[C)Ljava/security/Key;"),
            &[JValue::Object(&alias), JValue::Object(password)],
        )?
        .l()
    }

    /// `setKeyEntry(alias, key, password, null)`: stores a secret key (no certificate chain).
    pub(super) fn set_key_entry(
        &self,
        env: &mut Env<'_>,
        alias: &str,
        key: &JObject<'_>,
        password: &JObject<'_>,
    ) -> Result<()> {
        let alias = env.new_string(alias)?;
        env.call_method(
            self.0,
            jni_str!("setKeyEntry"),
            jni_sig!("(Ljava/lang/String;Ljava/security/Key;[C[Ljava/security/cert/Certificate;)V"),
            &[
                JValue::Object(&alias),
                JValue::Object(key),
                JValue::Object(password),
                JValue::Object(&JObject::null()),
            ],
        )?
        .v()
    }

    /// `deleteEntry(alias)`; deleting a missing alias is not an error.
    pub(super) fn delete_entry(&self, env: &mut Env<'_>, alias: &str) -> Result<()> {
        let alias = env.new_string(alias)?;
        env.call_method(
            self.0,
            jni_str!("deleteEntry"),
            jni_sig!("(Ljava/lang/String;)V"),
            &[JValue::Object(&alias)],
        )?
        .v()
    }

    /// `aliases()`, read out of its `Enumeration`.
    pub(super) fn aliases(&self, env: &mut Env<'_>) -> Result<Vec<String>> {
        let enumeration = env
            .call_method(
                self.0,
                jni_str!("aliases"),
                jni_sig!("()Ljava/util/Enumeration;"),
                &[],
            )?
            .l()?;
        let mut aliases = Vec::new();
        while env
            .call_method(
                &enumeration,
                jni_str!("hasMoreElements"),
                jni_sig!("()Z"),
                &[],
            )?
            .z()?
        {
            let alias = env
                .call_method(
                    &enumeration,
                    jni_str!("nextElement"),
                    jni_sig!("()Ljava/lang/Object;"),
                    &[],
                )?
                .l()?;
            let alias = env.cast_local::<JString<'_>>(alias)?;
            aliases.push(alias.try_to_string(env)?);
        }
        Ok(aliases)
    }

    /// `store(OutputStream, char[])`.
    pub(super) fn store(
        &self,
        env: &mut Env<'_>,
        stream: &JObject<'_>,
        password: &JObject<'_>,
    ) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("store"),
            jni_sig!("(Ljava/io/OutputStream;[C)V"),
            &[JValue::Object(stream), JValue::Object(password)],
        )?
        .v()
    }
}

/// `javax.crypto.KeyGenerator`.
pub(super) struct KeyGenerator<'a>(pub(super) &'a JObject<'a>);

impl KeyGenerator<'_> {
    /// `KeyGenerator.getInstance(algorithm)`, or `getInstance(algorithm, provider)`.
    pub(super) fn get_instance<'local>(
        env: &mut Env<'local>,
        algorithm: &str,
        provider: Option<&str>,
    ) -> Result<JObject<'local>> {
        let algorithm = env.new_string(algorithm)?;
        match provider {
            None => env.call_static_method(
                jni_str!("javax/crypto/KeyGenerator"),
                jni_str!("getInstance"),
                jni_sig!("(Ljava/lang/String;)Ljavax/crypto/KeyGenerator;"),
                &[JValue::Object(&algorithm)],
            ),
            Some(provider) => {
                let provider = env.new_string(provider)?;
                env.call_static_method(
                    jni_str!("javax/crypto/KeyGenerator"),
                    jni_str!("getInstance"),
                    jni_sig!("(Ljava/lang/String;Ljava/lang/String;)Ljavax/crypto/KeyGenerator;"),
                    &[JValue::Object(&algorithm), JValue::Object(&provider)],
                )
            }
        }?
        .l()
    }

    /// `init(keysize)`.
    pub(super) fn init_size(&self, env: &mut Env<'_>, bits: i32) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("init"),
            jni_sig!("(I)V"),
            &[JValue::Int(bits)],
        )?
        .v()
    }

    /// `init(AlgorithmParameterSpec)`.
    pub(super) fn init_spec(&self, env: &mut Env<'_>, spec: &JObject<'_>) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("init"),
            jni_sig!("(Ljava/security/spec/AlgorithmParameterSpec;)V"),
            &[JValue::Object(spec)],
        )?
        .v()
    }

    /// `generateKey()`.
    pub(super) fn generate_key<'local>(&self, env: &mut Env<'local>) -> Result<JObject<'local>> {
        env.call_method(
            self.0,
            jni_str!("generateKey"),
            jni_sig!("()Ljavax/crypto/SecretKey;"),
            &[],
        )?
        .l()
    }
}

/// `android.security.keystore.KeyGenParameterSpec.Builder`; exists only on Android.
pub(super) struct KeyGenParameterSpecBuilder<'a>(pub(super) &'a JObject<'a>);

impl KeyGenParameterSpecBuilder<'_> {
    /// `KeyProperties.PURPOSE_ENCRYPT | KeyProperties.PURPOSE_DECRYPT`.
    pub(super) const PURPOSE_ENCRYPT_DECRYPT: i32 = 1 | 2;

    /// `new Builder(alias, purposes)`.
    pub(super) fn new_instance<'local>(
        env: &mut Env<'local>,
        alias: &str,
        purposes: i32,
    ) -> Result<JObject<'local>> {
        let alias = env.new_string(alias)?;
        env.new_object(
            jni_str!("android/security/keystore/KeyGenParameterSpec$Builder"),
            jni_sig!("(Ljava/lang/String;I)V"),
            &[JValue::Object(&alias), JValue::Int(purposes)],
        )
    }

    /// `setKeySize(bits)`.
    pub(super) fn set_key_size(&self, env: &mut Env<'_>, bits: i32) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("setKeySize"),
            jni_sig!("(I)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
            &[JValue::Int(bits)],
        )?;
        Ok(())
    }

    /// `setUnlockedDeviceRequired(required)` (API 28+): the key is usable only while the device
    /// is unlocked, enforced by the keystore itself.
    pub(super) fn set_unlocked_device_required(
        &self,
        env: &mut Env<'_>,
        required: bool,
    ) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("setUnlockedDeviceRequired"),
            jni_sig!("(Z)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
            &[JValue::Bool(required)],
        )?;
        Ok(())
    }

    /// `setBlockModes(modes...)`.
    pub(super) fn set_block_modes(&self, env: &mut Env<'_>, modes: &[&str]) -> Result<()> {
        let modes = string_array(env, modes)?;
        env.call_method(
            self.0,
            jni_str!("setBlockModes"),
            jni_sig!(
                "([Ljava/lang/String;)Landroid/security/keystore/KeyGenParameterSpec$Builder;"
            ),
            &[JValue::Object(&modes)],
        )?;
        Ok(())
    }

    /// `setEncryptionPaddings(paddings...)`.
    pub(super) fn set_encryption_paddings(
        &self,
        env: &mut Env<'_>,
        paddings: &[&str],
    ) -> Result<()> {
        let paddings = string_array(env, paddings)?;
        env.call_method(
            self.0,
            jni_str!("setEncryptionPaddings"),
            jni_sig!(
                "([Ljava/lang/String;)Landroid/security/keystore/KeyGenParameterSpec$Builder;"
            ),
            &[JValue::Object(&paddings)],
        )?;
        Ok(())
    }

    /// `build()`.
    pub(super) fn build<'local>(&self, env: &mut Env<'local>) -> Result<JObject<'local>> {
        env.call_method(
            self.0,
            jni_str!("build"),
            jni_sig!("()Landroid/security/keystore/KeyGenParameterSpec;"),
            &[],
        )?
        .l()
    }
}

fn string_array<'local>(env: &mut Env<'local>, items: &[&str]) -> Result<JObject<'local>> {
    let first = env.new_string(items.first().copied().unwrap_or_default())?;
    let array = JObjectArray::<JString<'_>>::new(env, items.len(), &first)?;
    for (i, item) in items.iter().enumerate().skip(1) {
        let item = env.new_string(item)?;
        array.set_element(env, i, &item)?;
    }
    Ok(array.into())
}

/// `javax.crypto.Cipher`.
pub(super) struct Cipher<'a>(pub(super) &'a JObject<'a>);

impl Cipher<'_> {
    /// `Cipher.ENCRYPT_MODE`.
    pub(super) const ENCRYPT_MODE: i32 = 1;
    /// `Cipher.DECRYPT_MODE`.
    pub(super) const DECRYPT_MODE: i32 = 2;

    /// `Cipher.getInstance(transformation)`.
    pub(super) fn get_instance<'local>(
        env: &mut Env<'local>,
        transformation: &str,
    ) -> Result<JObject<'local>> {
        let transformation = env.new_string(transformation)?;
        env.call_static_method(
            jni_str!("javax/crypto/Cipher"),
            jni_str!("getInstance"),
            jni_sig!("(Ljava/lang/String;)Ljavax/crypto/Cipher;"),
            &[JValue::Object(&transformation)],
        )?
        .l()
    }

    /// `init(mode, key)`: the provider picks the IV (the only way AndroidKeyStore allows).
    pub(super) fn init(&self, env: &mut Env<'_>, mode: i32, key: &JObject<'_>) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("init"),
            jni_sig!("(ILjava/security/Key;)V"),
            &[JValue::Int(mode), JValue::Object(key)],
        )?
        .v()
    }

    /// `init(mode, key, params)`.
    pub(super) fn init_with(
        &self,
        env: &mut Env<'_>,
        mode: i32,
        key: &JObject<'_>,
        params: &JObject<'_>,
    ) -> Result<()> {
        env.call_method(
            self.0,
            jni_str!("init"),
            jni_sig!("(ILjava/security/Key;Ljava/security/spec/AlgorithmParameterSpec;)V"),
            &[
                JValue::Int(mode),
                JValue::Object(key),
                JValue::Object(params),
            ],
        )?
        .v()
    }

    /// `getIV()`.
    pub(super) fn get_iv(&self, env: &mut Env<'_>) -> Result<Vec<u8>> {
        let iv = env
            .call_method(self.0, jni_str!("getIV"), jni_sig!("()[B"), &[])?
            .l()?;
        object_to_bytes(env, iv)
    }

    /// `updateAAD(aad)`.
    pub(super) fn update_aad(&self, env: &mut Env<'_>, aad: &[u8]) -> Result<()> {
        let aad = byte_array(env, aad)?;
        env.call_method(
            self.0,
            jni_str!("updateAAD"),
            jni_sig!("([B)V"),
            &[JValue::Object(&aad)],
        )?
        .v()
    }

    /// `doFinal(input)`: the result as a Java array, so the caller can wipe it after copying.
    pub(super) fn do_final<'local>(
        &self,
        env: &mut Env<'local>,
        input: &JByteArray<'_>,
    ) -> Result<JByteArray<'local>> {
        let output = env
            .call_method(
                self.0,
                jni_str!("doFinal"),
                jni_sig!("([B)[B"),
                &[JValue::Object(input)],
            )?
            .l()?;
        env.cast_local::<JByteArray<'_>>(output)
    }
}

/// `javax.crypto.spec.GCMParameterSpec`.
pub(super) struct GcmParameterSpec;

impl GcmParameterSpec {
    /// `new GCMParameterSpec(tagBits, iv)`.
    pub(super) fn new_instance<'local>(
        env: &mut Env<'local>,
        tag_bits: i32,
        iv: &[u8],
    ) -> Result<JObject<'local>> {
        let iv = byte_array(env, iv)?;
        env.new_object(
            jni_str!("javax/crypto/spec/GCMParameterSpec"),
            jni_sig!("(I[B)V"),
            &[JValue::Int(tag_bits), JValue::Object(&iv)],
        )
    }
}

/// `java.io.ByteArrayInputStream`: feeds a keystore file's bytes, read by Rust, to `KeyStore.load`.
pub(super) struct ByteArrayInputStream;

impl ByteArrayInputStream {
    /// `new ByteArrayInputStream(bytes)`.
    pub(super) fn new_instance<'local>(
        env: &mut Env<'local>,
        bytes: &[u8],
    ) -> Result<JObject<'local>> {
        let bytes = byte_array(env, bytes)?;
        env.new_object(
            jni_str!("java/io/ByteArrayInputStream"),
            jni_sig!("([B)V"),
            &[JValue::Object(&bytes)],
        )
    }
}

/// `java.io.ByteArrayOutputStream`: collects `KeyStore.store`'s output, which Rust writes durably.
pub(super) struct ByteArrayOutputStream<'a>(pub(super) &'a JObject<'a>);

impl ByteArrayOutputStream<'_> {
    /// `new ByteArrayOutputStream()`.
    pub(super) fn new_instance<'local>(env: &mut Env<'local>) -> Result<JObject<'local>> {
        env.new_object(
            jni_str!("java/io/ByteArrayOutputStream"),
            jni_sig!("()V"),
            &[],
        )
    }

    /// `toByteArray()`.
    pub(super) fn to_byte_array(&self, env: &mut Env<'_>) -> Result<Vec<u8>> {
        let bytes = env
            .call_method(self.0, jni_str!("toByteArray"), jni_sig!("()[B"), &[])?
            .l()?;
        object_to_bytes(env, bytes)
    }
}
