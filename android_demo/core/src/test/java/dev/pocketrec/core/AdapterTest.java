package dev.pocketrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The adapter file format, shared with the Python SDK (its effect on search: RecommenderTest). */
public class AdapterTest {

  @Rule public TemporaryFolder temp = new TemporaryFolder();

  @Test
  public void roundTripsThroughItsFile() throws IOException {
    Map<String, Object> info = Collections.<String, Object>singletonMap("events", 12L);
    CodeBiasAdapter adapter =
        new CodeBiasAdapter("b", new float[2][3], "shared", 4, info)
            .withBoost(new int[] {1, 2}, 0.75f)
            .withBoost(new int[] {1, 0}, -2f);
    Path file = temp.getRoot().toPath().resolve("shared.json");
    adapter.write(file);
    Map<String, Object> json =
        GoldenTrace.map(Json.parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8)));
    assertEquals("pocketrec-adapter/1", json.get("format"));
    assertEquals("float32", GoldenTrace.map(json.get("bias")).get("dtype"));
    CodeBiasAdapter back = CodeBiasAdapter.read(file);
    assertEquals("b", back.bundle());
    assertEquals("shared", back.kind());
    assertEquals(4, back.version());
    assertEquals(12L, back.info().get("events"));
    assertEquals(2, back.numLevels());
    assertEquals(3, back.codebookSize());
    assertEquals(-1.25f, back.bias(0, 1), 0f);
    assertEquals(0.75f, back.bias(1, 2), 0f);
    assertEquals(-2f, back.bias(1, 0), 0f);
    assertEquals(0f, back.bias(0, 0), 0f);
    assertEquals(null, back.model());
    assertEquals(null, json.get("model")); // written only when the adapter names a model
    CodeBiasAdapter named =
        new CodeBiasAdapter("b", new float[2][3], "personal", 0, info, "abc")
            .withBoost(new int[] {1, 2}, 1f);
    named.write(file);
    assertEquals("abc", CodeBiasAdapter.read(file).model());
  }

  @Test
  public void readsWhatThePythonSdkWrites() {
    // json.dumps(Adapter(bundle="b", bias=np.array([[0.5, -1.0]], np.float32)).to_json())
    String python =
        "{\"format\": \"pocketrec-adapter/1\", \"bundle\": \"b\", \"kind\": \"personal\", "
            + "\"version\": 0, \"bias\": {\"dtype\": \"float32\", \"shape\": [1, 2], "
            + "\"b64\": \"AAAAPwAAgL8=\"}, \"info\": {}}";
    CodeBiasAdapter adapter = CodeBiasAdapter.parse(Json.parse(python));
    assertEquals(0.5f, adapter.bias(0, 0), 0f);
    assertEquals(-1f, adapter.bias(0, 1), 0f);
    assertEquals("personal", adapter.kind());
    assertEquals(Json.parse(python), Json.parse(Json.write(adapter.toJson())));
    CodeBiasAdapter minimal =
        CodeBiasAdapter.parse(
            Json.parse(
                "{\"format\": \"pocketrec-adapter/1\", \"bundle\": \"b\", \"bias\": "
                    + "{\"dtype\": \"float32\", \"shape\": [1, 2], \"b64\": \"AAAAPwAAgL8=\"}}"));
    assertEquals("personal", minimal.kind());
    assertEquals(0, minimal.version());
  }

  @Test
  public void rejectsMalformedAdapters() {
    assertParseFails("{\"format\": \"pocketrec-adapter/2\"}", "not a pocketrec adapter");
    assertParseFails(
        "{\"format\": \"pocketrec-adapter/1\", \"bias\": {}}", "needs a \"bundle\" name");
    assertParseFails(
        "{\"format\": \"pocketrec-adapter/1\", \"bundle\": \"b\", \"bias\": "
            + "{\"dtype\": \"float64\", \"shape\": [1, 1], \"b64\": \"AAAAAAAA8D8=\"}}",
        "must be a 2-D float32 array");
    assertParseFails(
        "{\"format\": \"pocketrec-adapter/1\", \"bundle\": \"b\", \"bias\": "
            + "{\"dtype\": \"float32\", \"shape\": [1, 1], \"b64\": \"AADAfw==\"}}",
        "must be finite");
    assertParseFails(
        "{\"format\": \"pocketrec-adapter/1\", \"bundle\": \"b\", \"model\": 7, \"bias\": "
            + "{\"dtype\": \"float32\", \"shape\": [1, 1], \"b64\": \"AAAAAA==\"}}",
        "\"model\" must be");
    CodeBiasAdapter twoByThree = CodeBiasAdapter.zeros("b", 2, 3);
    assertThrows(IllegalArgumentException.class, () -> twoByThree.withBoost(new int[] {1}, 1f));
    assertThrows(IllegalArgumentException.class, () -> twoByThree.withBoost(new int[] {1, 3}, 1f));
  }

  private static void assertParseFails(String json, String fragment) {
    BundleException e =
        assertThrows(BundleException.class, () -> CodeBiasAdapter.parse(Json.parse(json)));
    assertTrue(e.getMessage(), e.getMessage().contains(fragment));
  }
}
