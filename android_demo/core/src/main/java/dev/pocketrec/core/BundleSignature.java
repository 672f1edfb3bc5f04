package dev.pocketrec.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * Checks a bundle's {@code signature.json}: an Ed25519 signature of the exact bytes of {@code
 * manifest.json}, which lists every file's SHA-256, made with {@code pocketrec sign}. The format
 * and the key id (16 hex digits of the SHA-256 of the key's DER SubjectPublicKeyInfo) are those
 * of the Python SDK's {@code pocketrec._signing}. Ed25519 is in {@code java.security} from Java
 * 15 and Android API 33.
 */
public final class BundleSignature {

  public static final String FILE = "signature.json";
  private static final String SIGN_HINT = "sign it with `pocketrec sign BUNDLE --key KEY.pem`";

  /** A trusted publisher key and its id. */
  public static final class TrustedKey {
    private final String keyId;
    private final PublicKey key;

    TrustedKey(String keyId, PublicKey key) {
      this.keyId = keyId;
      this.key = key;
    }

    public String keyId() {
      return keyId;
    }
  }

  private BundleSignature() {}

  /**
   * Parses Ed25519 public keys in PEM form ({@code signing_key.pub.pem} of {@code pocketrec
   * keygen}).
   *
   * @throws BundleException no keys, or one that is not an Ed25519 public key in PEM form.
   */
  public static List<TrustedKey> parseKeys(List<String> pems) {
    requireKeys(pems);
    List<TrustedKey> keys = new ArrayList<>();
    for (String pem : pems) {
      if (pem.contains("PRIVATE KEY")) {
        throw new BundleException(
            "a private key was given as a trusted key; an app needs only the public one");
      }
      String body =
          pem.replace("-----BEGIN PUBLIC KEY-----", "")
              .replace("-----END PUBLIC KEY-----", "")
              .replaceAll("\\s", "");
      try {
        byte[] der = Base64.getDecoder().decode(body);
        PublicKey key =
            KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
        keys.add(new TrustedKey(keyId(der), key));
      } catch (IllegalArgumentException | GeneralSecurityException e) {
        throw new BundleException(
            "a trusted key is not an Ed25519 public key in PEM form (" + e.getMessage()
                + "); `pocketrec keygen` writes one as signing_key.pub.pem", e);
      }
    }
    return Collections.unmodifiableList(keys);
  }

  private static void requireKeys(List<?> keys) {
    if (keys.isEmpty()) {
      throw new BundleException(
          "the list of trusted keys is empty, so no bundle could be accepted; pass the "
              + "publisher's public key");
    }
  }

  /** 16 hex digits of the SHA-256 of a DER SubjectPublicKeyInfo. */
  static String keyId(byte[] der) {
    return Manifest.hex(sha256(der)).substring(0, 16);
  }

  /**
   * Checks that one of {@code trusted} signed {@code manifest}, the bytes of the folder's
   * manifest.json; parse those same bytes afterwards ({@link Bundle#open(Path, List)} does).
   *
   * @return the id of the key that signed it.
   * @throws BundleSignatureException unsigned, signed by an untrusted key, an invalid
   *     signature record, or a manifest changed after signing.
   */
  static String verify(Path folder, byte[] manifest, List<TrustedKey> trusted) {
    requireKeys(trusted);
    StringBuilder names = new StringBuilder();
    for (TrustedKey k : trusted) {
      names.append(names.length() == 0 ? "" : ", ").append(k.keyId);
    }
    Path path = folder.resolve(FILE);
    if (!Files.isRegularFile(path)) {
      throw new BundleSignatureException(
          folder + " is not signed, and this app accepts only bundles signed by " + names + "; "
              + SIGN_HINT);
    }
    String keyId;
    String manifestSha256;
    byte[] signature;
    try {
      Object parsed = Json.parse(new String(Files.readAllBytes(path), StandardCharsets.UTF_8));
      if (!(parsed instanceof Map)) {
        throw new IllegalArgumentException("not a JSON object");
      }
      Map<?, ?> record = (Map<?, ?>) parsed;
      if (!"ed25519".equals(record.get("algorithm"))) {
        throw new IllegalArgumentException(
            "algorithm " + record.get("algorithm") + ", expected ed25519");
      }
      keyId = string(record, "key_id");
      manifestSha256 = string(record, "manifest_sha256");
      String encoded = string(record, "signature");
      signature = Base64.getDecoder().decode(encoded);
      if (!Base64.getEncoder().encodeToString(signature).equals(encoded)) {
        throw new IllegalArgumentException("signature is not canonical, padded base64");
      }
      if (signature.length != 64) {
        throw new IllegalArgumentException(
            "an Ed25519 signature has 64 bytes, this one " + signature.length);
      }
    } catch (IOException | IllegalArgumentException e) {
      throw new BundleSignatureException(
          path + " is not a valid signature record (" + e.getMessage()
              + "); the bundle is corrupt: re-download it, or " + SIGN_HINT, e);
    }
    boolean known = false;
    for (TrustedKey k : trusted) { // ids are 64-bit prefixes: try every key that has this one
      if (k.keyId.equals(keyId)) {
        known = true;
        if (verifies(k.key, manifest, signature)) {
          return keyId;
        }
      }
    }
    if (!known) {
      throw new BundleSignatureException(
          folder + " is signed by key " + keyId + ", which is not trusted here (trusted: " + names
              + "); get the bundle from its publisher, or add that publisher's public key");
    }
    boolean changed = !Manifest.hex(sha256(manifest)).equals(manifestSha256);
    throw new BundleSignatureException(
        folder + "/manifest.json does not match its signature by " + keyId + ": "
            + (changed
                ? "the manifest was changed after signing"
                : "the signature does not verify (corrupt or forged)")
            + "; do not use this bundle: re-download it from its publisher");
  }

  private static boolean verifies(PublicKey key, byte[] data, byte[] signature) {
    try {
      Signature check = Signature.getInstance("Ed25519");
      check.initVerify(key);
      check.update(data);
      return check.verify(signature);
    } catch (GeneralSecurityException e) {
      return false;
    }
  }

  private static String string(Map<?, ?> record, String key) {
    Object value = record.get(key);
    if (!(value instanceof String)) {
      throw new IllegalArgumentException(key + " must be a string");
    }
    return (String) value;
  }

  private static byte[] sha256(byte[] data) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(data);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("every Java platform provides SHA-256", e);
    }
  }
}
