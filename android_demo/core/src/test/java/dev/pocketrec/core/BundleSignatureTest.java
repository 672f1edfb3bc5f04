package dev.pocketrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPairGenerator;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/**
 * The committed tiny bundle is signed by {@code pocketrec sign} (Python) with the test key of
 * tests/android/fixtures.py; the JVM core accepts it with that key and refuses every tampering.
 */
public class BundleSignatureTest {

  @Rule public TemporaryFolder temp = new TemporaryFolder();

  private static List<BundleSignature.TrustedKey> testKey() throws IOException {
    Path pem = TestResources.dir().resolve("tiny_signing_key.pub.pem");
    return BundleSignature.parseKeys(
        Collections.singletonList(new String(Files.readAllBytes(pem), StandardCharsets.UTF_8)));
  }

  private static String signedKeyId() throws IOException {
    Path record = TestResources.tinyBundle().resolve(BundleSignature.FILE);
    Map<?, ?> parsed =
        (Map<?, ?>) Json.parse(new String(Files.readAllBytes(record), StandardCharsets.UTF_8));
    return (String) parsed.get("key_id");
  }

  private Path copy() throws IOException {
    return TestResources.copyBundle(TestResources.tinyBundle(), temp.newFolder("bundle").toPath());
  }

  private static void assertRefused(Path folder, String expected) throws IOException {
    BundleSignatureException e =
        assertThrows(BundleSignatureException.class, () -> Bundle.open(folder, testKey()));
    assertTrue(e.getMessage(), e.getMessage().contains(expected));
  }

  @Test
  public void acceptsTheBundlePythonSigned() throws IOException {
    List<BundleSignature.TrustedKey> keys = testKey();
    assertEquals(signedKeyId(), keys.get(0).keyId());
    Bundle bundle = Bundle.open(TestResources.tinyBundle(), keys);
    assertEquals(signedKeyId(), bundle.signedBy());
    assertEquals(40, bundle.catalog().size());
    assertNull(Bundle.open(TestResources.tinyBundle()).signedBy()); // no keys: not checked
  }

  @Test
  public void refusesAnUnsignedBundle() throws IOException {
    Path copy = copy();
    Files.delete(copy.resolve(BundleSignature.FILE));
    assertRefused(copy, "is not signed, and this app accepts only bundles signed by");
    Bundle.open(copy); // without pinned keys it still opens
  }

  @Test
  public void refusesARewrittenManifest() throws IOException {
    Path copy = copy();
    Path manifest = copy.resolve("manifest.json");
    String text = new String(Files.readAllBytes(manifest), StandardCharsets.UTF_8);
    String edited = text.replace("\"top_k\": 10", "\"top_k\": 9");
    assertTrue(!edited.equals(text));
    Files.write(manifest, edited.getBytes(StandardCharsets.UTF_8));
    Bundle.open(copy); // every sha256 still matches
    assertRefused(copy, "the manifest was changed after signing");
  }

  @Test
  public void refusesAForgedSignature() throws IOException {
    Path copy = copy();
    Path record = copy.resolve(BundleSignature.FILE);
    String text = new String(Files.readAllBytes(record), StandardCharsets.UTF_8);
    Map<?, ?> parsed = (Map<?, ?>) Json.parse(text);
    String forged = Base64.getEncoder().encodeToString(new byte[64]);
    Files.write(
        record,
        text.replace((String) parsed.get("signature"), forged).getBytes(StandardCharsets.UTF_8));
    assertRefused(copy, "the signature does not verify (corrupt or forged)");
  }

  @Test
  public void refusesUnpaddedBase64AsPythonDoes() throws IOException {
    Path copy = copy();
    Path record = copy.resolve(BundleSignature.FILE);
    String text = new String(Files.readAllBytes(record), StandardCharsets.UTF_8);
    String signature = (String) ((Map<?, ?>) Json.parse(text)).get("signature");
    assertTrue(signature.endsWith("=="));
    Files.write(
        record,
        text.replace(signature, signature.substring(0, signature.length() - 2))
            .getBytes(StandardCharsets.UTF_8));
    assertRefused(copy, "signature is not canonical, padded base64");
  }

  @Test
  public void refusesAnEmptyListOfKeys() {
    BundleException e =
        assertThrows(
            BundleException.class,
            () ->
                BundleSignature.verify(
                    TestResources.tinyBundle(), new byte[0], Collections.emptyList()));
    assertTrue(e.getMessage(), e.getMessage().contains("the list of trusted keys is empty"));
  }

  @Test
  public void refusesACorruptSignatureRecord() throws IOException {
    Path copy = copy();
    Files.write(copy.resolve(BundleSignature.FILE), "{\"algorithm\": \"rsa\"}".getBytes());
    assertRefused(copy, "is not a valid signature record (algorithm rsa, expected ed25519)");
  }

  @Test
  public void refusesABundleSignedByAnotherKey() throws IOException, NoSuchAlgorithmException {
    byte[] der = KeyPairGenerator.getInstance("Ed25519").generateKeyPair().getPublic().getEncoded();
    String pem =
        "-----BEGIN PUBLIC KEY-----\n" + Base64.getEncoder().encodeToString(der)
            + "\n-----END PUBLIC KEY-----\n";
    List<BundleSignature.TrustedKey> other =
        BundleSignature.parseKeys(Collections.singletonList(pem));
    BundleSignatureException e =
        assertThrows(
            BundleSignatureException.class,
            () -> Bundle.open(TestResources.tinyBundle(), other));
    assertTrue(
        e.getMessage(),
        e.getMessage().contains("is signed by key " + signedKeyId() + ", which is not trusted"));
  }

  @Test
  public void checksEveryFileOfASignedBundle() throws IOException {
    Path copy = copy();
    Path catalog = copy.resolve("catalog.json");
    byte[] bytes = Files.readAllBytes(catalog);
    bytes[bytes.length / 2] ^= 1;
    Files.write(catalog, bytes);
    BundleException e = assertThrows(BundleException.class, () -> Bundle.open(copy, testKey()));
    assertTrue(e.getMessage(), e.getMessage().contains("catalog.json does not match its sha256"));
  }

  @Test
  public void rejectsKeysThatAreNotEd25519PublicKeys() {
    assertThrows(BundleException.class, () -> BundleSignature.parseKeys(Collections.emptyList()));
    BundleException priv =
        assertThrows(
            BundleException.class,
            () ->
                BundleSignature.parseKeys(
                    Collections.singletonList("-----BEGIN PRIVATE KEY-----\nAA\n")));
    assertTrue(priv.getMessage(), priv.getMessage().contains("an app needs only the public one"));
    BundleException junk =
        assertThrows(
            BundleException.class,
            () -> BundleSignature.parseKeys(Collections.singletonList("not a key")));
    assertTrue(junk.getMessage(), junk.getMessage().contains("not an Ed25519 public key"));
  }
}
