package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** Opening the tiny bundle, and every way a bundle can be broken. */
public class BundleTest {

  private static final String QNN = "QNNExecutionProvider";

  @Rule public TemporaryFolder temp = new TemporaryFolder();

  @Test
  public void opensAndVerifiesTheTinyBundle() {
    Bundle bundle = Bundle.open(TestResources.tinyBundle());
    Manifest m = bundle.manifest();
    assertEquals("tiny_shop-student-seed0-fp32", m.name());
    assertEquals("fp32", m.precision());
    assertEquals(5, m.maxLen());
    assertEquals(3, m.semanticIds().numLevels());
    assertEquals(8, m.semanticIds().codebookSize());
    assertEquals(8, m.semanticIds().emptyCode());
    assertEquals(Integer.valueOf(20), m.defaultBeamWidth());
    assertEquals(40, m.numItems());
    assertNull(m.encoder().staticRows());
    assertNull(m.decoder().staticRows());
    assertNull(m.decoder().staticBeams());
    assertEquals("users", m.decoder().inputs().get(0).shape().get(0));
    assertEquals("beams", m.decoder().inputs().get(2).shape().get(1));
    assertEquals(
        Arrays.asList("memory", "memory_mask", "prefix", "level"),
        Arrays.asList(
            m.decoder().inputs().stream().map(Manifest.TensorSpec::name).toArray()));
    assertEquals(Arrays.asList(), m.decoder().inputs().get(3).shape()); // level is a scalar
    assertEquals(40, bundle.catalog().size());
    assertEquals("item0", bundle.catalog().itemId(0));
    assertEquals("Item 0 lipstick", bundle.catalog().title(0));
    assertEquals("Brand0", bundle.catalog().metadata(0).get("brand"));
    assertArrayEquals(new int[] {7, 2, 0}, bundle.semanticIds()[1]);
  }

  @Test
  public void sizesSplitGraphsFromTables() throws IOException {
    Bundle bundle = Bundle.open(TestResources.tinyBundle());
    Path folder = TestResources.tinyBundle();
    assertEquals(
        Files.size(folder.resolve("encoder.onnx")) + Files.size(folder.resolve("decoder.onnx")),
        bundle.graphBytes());
    long tables = 0;
    for (String name : Arrays.asList("catalog.json", "semantic_ids.npy", "tokenizer.json")) {
      tables += Files.size(folder.resolve(name));
    }
    assertEquals(tables, bundle.tableBytes());
  }

  @Test
  public void sha256MatchesTheManifest() throws IOException {
    Manifest m = Manifest.read(TestResources.tinyBundle());
    assertEquals(
        m.files().get("catalog.json").sha256(),
        Manifest.sha256(TestResources.tinyBundle().resolve("catalog.json")));
  }

  @Test
  public void alteredFileIsNamed() throws IOException {
    Path copy = copy();
    Path catalog = copy.resolve("catalog.json");
    byte[] bytes = Files.readAllBytes(catalog);
    bytes[bytes.length / 2] ^= 1; // same size, different content
    Files.write(catalog, bytes);
    assertOpenFails(copy, "bundle file catalog.json does not match its sha256");
  }

  @Test
  public void missingFileIsNamed() throws IOException {
    Path copy = copy();
    Files.delete(copy.resolve("decoder.onnx"));
    assertOpenFails(copy, "bundle file decoder.onnx is missing from " + copy);
  }

  @Test
  public void schemaOneBundleAsksForAReexport() throws IOException {
    Path copy = editManifest(m -> m.put("schema_version", 1L));
    BundleException e = assertThrows(BundleException.class, () -> Bundle.open(copy));
    assertTrue(e.getMessage(), e.getMessage().contains("schema version 1"));
    assertTrue(e.getMessage(), e.getMessage().contains("pocketrec export"));
  }

  @Test
  public void newerSchemaAsksForAnUpgrade() throws IOException {
    Path copy = editManifest(m -> m.put("schema_version", 3L));
    BundleException e = assertThrows(BundleException.class, () -> Bundle.open(copy));
    assertTrue(e.getMessage(), e.getMessage().contains("schema version 3"));
    assertTrue(e.getMessage(), e.getMessage().contains("upgrade the app's pocketrec core"));
  }

  @Test
  public void invalidManifestsAreExplained() throws IOException {
    assertOpenFails(editManifest(m -> m.remove("max_len")), "manifest: manifest has no 'max_len'");
    assertOpenFails(
        editManifest(m -> m.put("hidden", "16")),
        "manifest: manifest.hidden should be an integer, got a string");
    assertOpenFails(
        editManifest(m -> m.put("precision", "fp16")), "precision 'fp16' is not one of");
    assertOpenFails(
        editManifest(m -> GoldenTrace.map(m.get("files")).remove("tokenizer.json")),
        "files [tokenizer.json] are used but have no sha256 entry");
    assertOpenFails(
        editManifest(m -> GoldenTrace.map(m.get("semantic_ids")).put("codebook_size", 1L)),
        "semantic_ids has 3 levels of 1 codes");
    assertOpenFails(
        editManifest(
            m -> {
              Map<String, Object> files = GoldenTrace.map(m.get("files"));
              files.put("../outside.onnx", files.get("encoder.onnx"));
            }),
        "file name '../outside.onnx' must be a relative path inside the bundle folder");
    assertOpenFails(
        editManifest(m -> m.put("schema_version", 0L)), "schema_version 0 is not valid");
  }

  @Test
  public void versionAndParentOfFederatedRounds() throws IOException {
    Manifest exported = Manifest.read(TestResources.tinyBundle());
    assertEquals(0, exported.version());
    assertNull(exported.parent());
    Path round =
        editManifest(
            m -> {
              m.put("version", 3L);
              m.put("parent", "ab12");
            });
    Manifest m = Bundle.open(round).manifest();
    assertEquals(3, m.version());
    assertEquals("ab12", m.parent());
    assertOpenFails(
        editManifest(x -> x.put("version", -1L)),
        "manifest: version must be an integer >= 0, got -1");
    assertOpenFails(
        editManifest(x -> x.put("version", true)), "version must be an integer >= 0, got true");
    assertOpenFails(
        editManifest(x -> x.put("version", null)), "version must be an integer >= 0, got null");
    assertOpenFails(
        editManifest(x -> x.put("parent", 7L)), "manifest: parent must be a sha256 string, got 7");
  }

  @Test
  public void missingOrCorruptManifest() throws IOException {
    Path empty = temp.newFolder("empty").toPath();
    assertOpenFails(empty, "is not a pocketrec bundle: it has no manifest.json");
    Path copy = copy();
    Files.write(copy.resolve("manifest.json"), bytes("{\"schema_version\": 1,"));
    assertOpenFails(copy, "is not valid JSON");
  }

  @Test
  public void tablesMustAgreeWithTheManifest() throws IOException {
    Path copy = editManifest(m -> m.put("num_items", 39L));
    BundleException e = assertThrows(BundleException.class, () -> Bundle.open(copy, false));
    assertTrue(e.getMessage(), e.getMessage().contains("bundle tables disagree with the manifest"));
  }

  @Test
  public void runtimeVersionIsChecked() {
    Manifest m = Manifest.read(TestResources.tinyBundle()); // needs 1.18
    m.checkRuntime("1.18.0");
    m.checkRuntime("1.22.1");
    m.checkRuntime("2.0");
    IncompatibleRuntimeException e =
        assertThrows(IncompatibleRuntimeException.class, () -> m.checkRuntime("1.17.3"));
    assertTrue(
        e.getMessage(),
        e.getMessage().contains("needs onnxruntime >= 1.18, but the app has 1.17.3"));
    assertEquals(0, Manifest.compareVersions("1.18", "1.18.0"));
    assertTrue(Manifest.compareVersions("1.9.0", "1.18") < 0);
  }

  @Test
  public void sharedAdapterIsLoadedAndApplied() throws IOException {
    Path copy = copy();
    CodeBiasAdapter.zeros("tiny_shop-student-seed0-fp32", 3, 8)
        .withBoost(new int[] {1, 2, 0}, 2f)
        .write(copy.resolve("shared_adapter.json"));
    addFile(copy, "shared_adapter.json");
    editManifest(copy, m -> m.put("adapter", "shared_adapter.json"));
    Bundle bundle = Bundle.open(copy);
    assertEquals(2f, bundle.sharedAdapter().bias(1, 2), 0f);
    Recommender rec = Recommender.fromBundle(bundle, new Fakes.Model(8));
    assertEquals(1, rec.adapters().size());
    assertTrue(rec.withoutAdapters().adapters().isEmpty());
    assertNull(Bundle.open(TestResources.tinyBundle()).sharedAdapter());

    CodeBiasAdapter.zeros(bundle.manifest().name(), 3, 7)
        .write(copy.resolve("shared_adapter.json"));
    addFile(copy, "shared_adapter.json");
    assertOpenFails(copy, "shared adapter has shape [3, 7], expected [3, 8]");
  }

  @Test
  public void compiledGraphsAndProviderOptions() throws IOException {
    Path copy = copy();
    Files.copy(copy.resolve("decoder.onnx"), copy.resolve("decoder.qnn.onnx"));
    editManifest(
        copy,
        m -> {
          Map<String, Object> decoder = GoldenTrace.map(m.get("decoder"));
          decoder.put("compiled", Collections.singletonMap(QNN, "decoder.qnn.onnx"));
          Map<String, Object> qnn = new LinkedHashMap<>();
          qnn.put("backend_path", "libQnnHtp.so");
          qnn.put("soc_model", 60L);
          m.put("provider_options", Collections.singletonMap(QNN, qnn));
        });
    assertOpenFails(copy, "files [decoder.qnn.onnx] are used but have no sha256 entry");
    addFile(copy, "decoder.qnn.onnx");
    Bundle bundle = Bundle.open(copy);
    assertEquals(copy.resolve("decoder.qnn.onnx"), bundle.decoderFile(QNN));
    assertEquals(copy.resolve("decoder.onnx"), bundle.decoderFile("CPUExecutionProvider"));
    assertEquals(copy.resolve("encoder.onnx"), bundle.encoderFile(QNN));
    Map<String, String> options = bundle.manifest().providerOptions().get(QNN);
    assertEquals("libQnnHtp.so", options.get("backend_path"));
    assertEquals("60", options.get("soc_model"));
  }

  /** Adds (or updates) the sha256 and size of {@code name} in the copy's manifest. */
  @Test
  public void modelIdIsThePythonSdks() throws IOException {
    Path tiny = TestResources.tinyBundle();
    Map<String, Object> ids =
        GoldenTrace.map(Json.parse(read(TestResources.dir().resolve("model_ids.json"))));
    Map<String, Object> json = GoldenTrace.map(Json.parse(read(tiny.resolve("manifest.json"))));
    assertEquals(ids.get("tiny_bundle"), Manifest.parse(json).modelId());
    assertEquals(ids.get("tiny_bundle"), Bundle.open(tiny).manifest().modelId());
    // tests/android/fixtures.py: ODD_FILE_NAMES, the n-th with sha256 of 64 digits n
    String[] odd = {"donn\u00e9es/\u00e9.bin", "a\"b", "\uff01", "\ud83d\ude00", "tab\there"};
    Map<String, Object> files = GoldenTrace.map(json.get("files"));
    for (int n = 0; n < odd.length; n++) {
      Map<String, Object> entry = new LinkedHashMap<>();
      entry.put("sha256", String.valueOf(n).repeat(64));
      entry.put("bytes", 1L);
      files.put(odd[n], entry);
    }
    assertEquals(ids.get("tiny_bundle_with_odd_file_names"), Manifest.parse(json).modelId());
  }

  @Test
  public void adaptersOfAnotherModelAreRefused() throws IOException {
    Path copy = copy();
    Bundle plain = Bundle.open(copy);
    String name = plain.manifest().name();
    String other = "0".repeat(64);
    Map<String, Object> none = Collections.<String, Object>emptyMap();
    Recommender rec = Recommender.fromBundle(plain, new Fakes.Model(8));
    CodeBiasAdapter mine =
        new CodeBiasAdapter(name, new float[3][8], "personal", 0, none, plain.manifest().modelId());
    assertEquals(1, rec.withAdapters(Collections.singletonList(mine)).adapters().size());
    CodeBiasAdapter anyModel = CodeBiasAdapter.zeros(name, 3, 8);
    assertEquals(1, rec.withAdapters(Collections.singletonList(anyModel)).adapters().size());
    CodeBiasAdapter stale = new CodeBiasAdapter(name, new float[3][8], "personal", 0, none, other);
    InvalidRequestException e =
        assertThrows(
            InvalidRequestException.class,
            () -> rec.withAdapters(Collections.singletonList(stale)));
    assertTrue(e.getMessage(), e.getMessage().contains("another model of bundle"));
    assertTrue(e.getMessage(), e.getMessage().contains("fit it again"));

    new CodeBiasAdapter(name, new float[3][8], "shared", 1, none, other)
        .write(copy.resolve("shared_adapter.json"));
    addFile(copy, "shared_adapter.json");
    editManifest(copy, m -> m.put("adapter", "shared_adapter.json"));
    assertOpenFails(copy, "was published for another model");
  }

  private static String read(Path file) throws IOException {
    return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
  }

  private static void addFile(Path copy, String name) throws IOException {
    Map<String, Object> entry = new LinkedHashMap<>();
    entry.put("sha256", Manifest.sha256(copy.resolve(name)));
    entry.put("bytes", Files.size(copy.resolve(name)));
    editManifest(copy, m -> GoldenTrace.map(m.get("files")).put(name, entry));
  }

  private Path copy() throws IOException {
    return TestResources.copyBundle(TestResources.tinyBundle(), temp.newFolder().toPath());
  }

  private Path editManifest(Consumer<Map<String, Object>> edit) throws IOException {
    return editManifest(copy(), edit);
  }

  private static Path editManifest(Path copy, Consumer<Map<String, Object>> edit)
      throws IOException {
    Path manifest = copy.resolve("manifest.json");
    String text = new String(Files.readAllBytes(manifest), StandardCharsets.UTF_8);
    Map<String, Object> json = GoldenTrace.map(Json.parse(text));
    edit.accept(json);
    Files.write(manifest, bytes(Json.writePretty(json)));
    return copy;
  }

  private static byte[] bytes(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }

  private static void assertOpenFails(Path folder, String fragment) {
    BundleException e = assertThrows(BundleException.class, () -> Bundle.open(folder));
    assertTrue(e.getMessage(), e.getMessage().contains(fragment));
  }
}
