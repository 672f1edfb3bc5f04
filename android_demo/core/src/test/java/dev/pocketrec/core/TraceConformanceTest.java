package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.Parameterized;
import org.junit.runners.Parameterized.Parameters;

/**
 * Replays every golden trace ({@code *_trace.json.gz} in the test resources) through the JVM
 * core and requires the Python SDK's results: the same items and semantic IDs in the same order,
 * log-probabilities within 1e-9, or the same error type.
 *
 * <p>Each request runs with the recommender built from the trace's embedded tables and settings;
 * a trace with a bundle folder beside it ({@code tiny_trace.json.gz} and {@code tiny_bundle/})
 * runs a second time with the recommender built from the opened bundle, which also checks
 * manifest handling and the catalogue's metadata.
 */
@RunWith(Parameterized.class)
public class TraceConformanceTest {

  private static final double LOG_PROB_TOLERANCE = 1e-9;

  private final GoldenTrace trace;
  private final GoldenTrace.Case request;
  private final Bundle bundle; // null: tables from the trace

  public TraceConformanceTest(
      String label, GoldenTrace trace, GoldenTrace.Case request, Bundle bundle) {
    this.trace = trace;
    this.request = request;
    this.bundle = bundle;
  }

  @Parameters(name = "{0}")
  public static List<Object[]> requests() throws IOException {
    List<Object[]> params = new ArrayList<>();
    List<Path> traces = TestResources.traces();
    if (traces.isEmpty()) {
      throw new IllegalStateException("no *_trace.json.gz in " + TestResources.dir());
    }
    for (Path file : traces) {
      GoldenTrace trace = GoldenTrace.read(file);
      Path folder = TestResources.dir().resolve(trace.name + "_bundle");
      Bundle bundle = Files.isDirectory(folder) ? Bundle.open(folder) : null;
      for (GoldenTrace.Case c : trace.cases) {
        String what = trace.name + " #" + c.index + " " + c.options;
        params.add(new Object[] {what + " [trace tables]", trace, c, null});
        if (bundle != null) {
          params.add(new Object[] {what + " [" + folder.getFileName() + "]", trace, c, bundle});
        }
      }
    }
    return params;
  }

  @Test
  public void replayMatchesPython() {
    String where = trace.name + " case " + request.index;
    ReplayRunner runner = new ReplayRunner(request.calls, where);
    Recommender recommender =
        bundle == null ? trace.recommender(runner) : Recommender.fromBundle(bundle, runner);
    List<Recommendation> got;
    try {
      got = call(recommender, request.options, request.history);
    } catch (RecommenderException e) {
      assertNotNull(where + ": Python returned results but Java threw " + e, request.error);
      String type = javaName(request.error.get("type"));
      assertEquals(where + ": error type", type, e.getClass().getSimpleName());
      runner.assertAllCalled();
      return;
    }
    if (request.error != null) {
      fail(where + ": Python raised " + request.error + " but Java returned " + got);
    }
    runner.assertAllCalled();
    assertEquals(where + ": number of results", request.result.size(), got.size());
    for (int j = 0; j < got.size(); j++) {
      Map<String, Object> want = request.result.get(j);
      Recommendation have = got.get(j);
      String at = where + " rank " + j;
      assertEquals(at + ": item", want.get("item_id"), have.itemId());
      assertArrayEquals(at + ": semantic id", ints(want.get("semantic_id")), have.semanticId());
      double logProb = ((Number) want.get("log_prob")).doubleValue();
      assertEquals(at + ": log_prob", logProb, have.logProb(), LOG_PROB_TOLERANCE);
      if (bundle != null) {
        int row = bundle.catalog().rowOf(have.itemId());
        assertEquals(at + ": metadata", bundle.catalog().metadata(row), have.metadata());
        assertTrue(at + ": metadata has a title", have.metadata().containsKey("title"));
      }
    }
  }

  /**
   * Calls {@code recommend} with the recorded options (Python's defaults where absent). The Java
   * API is typed, so an option Python receives with a wrong type (k=2.5, unknown=3) cannot be
   * passed; Python answers those with InvalidRequestError, and so does this conversion.
   */
  private static List<Recommendation> call(
      Recommender recommender, Map<String, Object> options, List<Object> history) {
    int k = intOption(options, "k", 10);
    Object exclude = options.getOrDefault("exclude_history", Boolean.TRUE);
    if (!(exclude instanceof Boolean)) {
      throw new IllegalStateException("trace option exclude_history must be a boolean: " + exclude);
    }
    Object unknown = options.getOrDefault("unknown", "drop");
    if (!(unknown instanceof String)) {
      throw new InvalidRequestException("unknown must be 'drop' or 'raise', got " + unknown);
    }
    Integer beamWidth =
        options.get("beam_width") == null ? null : intOption(options, "beam_width", 0);
    return recommender.recommend(
        history, k, (Boolean) exclude, UnknownPolicy.parse((String) unknown), beamWidth);
  }

  private static int intOption(Map<String, Object> options, String key, int fallback) {
    Object value = options.getOrDefault(key, (long) fallback);
    if (!(value instanceof Long) || (Long) value != ((Long) value).intValue()) {
      throw new InvalidRequestException(key + " must be an integer, got " + value);
    }
    return ((Long) value).intValue();
  }

  /** The Java name of a Python SDK error: UnknownItemError -> UnknownItemException. */
  private static String javaName(Object pythonType) {
    String name = (String) pythonType;
    return name.endsWith("Error") ? name.substring(0, name.length() - 5) + "Exception" : name;
  }

  private static int[] ints(Object list) {
    List<Object> values = GoldenTrace.list(list);
    int[] out = new int[values.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = Math.toIntExact((Long) values.get(i));
    }
    return out;
  }
}
