package dev.pocketrec.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPInputStream;

/**
 * A golden trace ({@code pocketrec-trace/1}) recorded by the Python SDK: the bundle's tables and
 * settings, and per request every model call and the result (or the error).
 */
final class GoldenTrace {

  static final String FORMAT = "pocketrec-trace/1";

  /** One recorded model call. */
  static final class Call {
    final String graph;
    final Map<String, NdArray> inputs;
    final NdArray output;

    Call(String graph, Map<String, NdArray> inputs, NdArray output) {
      this.graph = graph;
      this.inputs = inputs;
      this.output = output;
    }
  }

  /** One recorded request. */
  static final class Case {
    final int index;
    final List<Object> history;
    final Map<String, Object> options;
    final List<Call> calls;
    final List<Map<String, Object>> result; // null for an error
    final Map<String, Object> error; // null for a result

    Case(
        int index,
        List<Object> history,
        Map<String, Object> options,
        List<Call> calls,
        List<Map<String, Object>> result,
        Map<String, Object> error) {
      this.index = index;
      this.history = history;
      this.options = options;
      this.calls = calls;
      this.result = result;
      this.error = error;
    }
  }

  final String name;
  final Map<String, Object> bundle;
  final int[][] semanticIds;
  final List<String> itemIds;
  final double[] popularity;
  final List<Case> cases;

  private GoldenTrace(
      String name,
      Map<String, Object> bundle,
      int[][] semanticIds,
      List<String> itemIds,
      double[] popularity,
      List<Case> cases) {
    this.name = name;
    this.bundle = bundle;
    this.semanticIds = semanticIds;
    this.itemIds = itemIds;
    this.popularity = popularity;
    this.cases = cases;
  }

  static GoldenTrace read(Path file) throws IOException {
    Map<String, Object> json = map(Json.parse(gunzip(file)));
    if (!FORMAT.equals(json.get("format"))) {
      throw new IOException(file + " is not a " + FORMAT + " trace: format " + json.get("format"));
    }
    List<String> ids = new ArrayList<>();
    for (Object id : list(json.get("item_ids"))) {
      ids.add((String) id);
    }
    List<Case> cases = new ArrayList<>();
    for (Object c : list(json.get("cases"))) {
      cases.add(parseCase(cases.size(), map(c)));
    }
    return new GoldenTrace(
        TestResources.traceName(file),
        map(json.get("bundle")),
        NdArray.fromJson(json.get("semantic_ids")).toIntMatrix(),
        Collections.unmodifiableList(ids),
        NdArray.fromJson(json.get("popularity")).toDoubles(),
        Collections.unmodifiableList(cases));
  }

  /** The bundle setting {@code key} as an int, or null when the trace does not record it. */
  Integer setting(String key) {
    Object value = bundle.get(key);
    return value == null ? null : Math.toIntExact((Long) value);
  }

  /** A recommender built from the trace's embedded tables and settings only. */
  Recommender recommender(ModelRunner runner) {
    Object width = map(bundle.get("search")).get("beam_width");
    return Recommender.builder(Catalog.of(itemIds, popularity), semanticIds, runner)
        .bundleName((String) bundle.get("name"))
        .window(setting("max_len"))
        .codebookSize(setting("codebook_size"))
        .defaultBeamWidth(width == null ? null : Math.toIntExact((Long) width))
        .staticRows(setting("static_batch"), setting("static_batch"))
        .build();
  }

  private static Case parseCase(int index, Map<String, Object> c) {
    List<Call> calls = new ArrayList<>();
    for (Object call : list(c.get("calls"))) {
      Map<String, Object> recorded = map(call);
      Map<String, NdArray> inputs = new LinkedHashMap<>();
      for (Map.Entry<String, Object> input : map(recorded.get("inputs")).entrySet()) {
        inputs.put(input.getKey(), NdArray.fromJson(input.getValue()));
      }
      NdArray output = NdArray.fromJson(recorded.get("output"));
      calls.add(new Call((String) recorded.get("graph"), inputs, output));
    }
    List<Map<String, Object>> result = null;
    if (c.get("result") != null) {
      result = new ArrayList<>();
      for (Object r : list(c.get("result"))) {
        result.add(map(r));
      }
    }
    Map<String, Object> error = c.get("error") == null ? null : map(c.get("error"));
    return new Case(index, list(c.get("history")), map(c.get("options")), calls, result, error);
  }

  private static String gunzip(Path file) throws IOException {
    try (InputStream in = new GZIPInputStream(Files.newInputStream(file))) {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      byte[] buffer = new byte[1 << 16];
      for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
        out.write(buffer, 0, n);
      }
      return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> map(Object json) {
    return (Map<String, Object>) json;
  }

  @SuppressWarnings("unchecked")
  static List<Object> list(Object json) {
    return (List<Object>) json;
  }
}
