package dev.pocketrec.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A bundle's {@code manifest.json}: the one contract between {@code pocketrec export}, the Python
 * SDK, the benchmark and this core.
 *
 * <p>Parsing checks the same things as the Python SDK's {@code pocketrec._manifest}: required
 * fields and their types, a schema version this core can read, a known precision, positive sizes,
 * and a sha256 entry for every file the manifest refers to. {@link #verifyIntegrity} then checks
 * the files themselves.
 */
public final class Manifest {

  /** The newest manifest schema this core reads. */
  public static final int SCHEMA_VERSION = 2; // 2: the decoder takes a (users, beams) grid

  /** Precisions a bundle may be exported in. */
  public static final List<String> PRECISIONS =
      Collections.unmodifiableList(Arrays.asList("fp32", "int8", "int4", "npu"));

  private static final Pattern VERSION_NUMBER = Pattern.compile("\\d+");

  /** A graph input or output: name, element type and shape (ints, or names of dynamic axes). */
  public static final class TensorSpec {
    private final String name;
    private final String dtype;
    private final List<Object> shape;

    TensorSpec(String name, String dtype, List<Object> shape) {
      this.name = name;
      this.dtype = dtype;
      this.shape = Collections.unmodifiableList(new ArrayList<>(shape));
    }

    public String name() {
      return name;
    }

    public String dtype() {
      return dtype;
    }

    /** Each dimension: a {@link Long} when fixed, a {@link String} naming a dynamic axis. */
    public List<Object> shape() {
      return shape;
    }
  }

  /**
   * One ONNX graph file and its tensors, and optionally ahead-of-time compiled versions of the
   * same graph per execution provider (for example a Qualcomm HTP context model for QNN).
   */
  public static final class GraphSpec {
    private final String file;
    private final List<TensorSpec> inputs;
    private final List<TensorSpec> outputs;
    private final Map<String, String> compiled;

    GraphSpec(
        String file,
        List<TensorSpec> inputs,
        List<TensorSpec> outputs,
        Map<String, String> compiled) {
      this.file = file;
      this.inputs = Collections.unmodifiableList(inputs);
      this.outputs = Collections.unmodifiableList(outputs);
      this.compiled = Collections.unmodifiableMap(compiled);
    }

    public String file() {
      return file;
    }

    /** Compiled versions of this graph by execution provider name (often empty). */
    public Map<String, String> compiled() {
      return compiled;
    }

    /** The file to load for {@code provider}: its compiled version if any, else {@link #file}. */
    public String fileFor(String provider) {
      String precompiled = compiled.get(provider);
      return precompiled != null ? precompiled : file;
    }

    public List<TensorSpec> inputs() {
      return inputs;
    }

    public List<TensorSpec> outputs() {
      return outputs;
    }

    /**
     * The fixed batch of this graph (first axis of its first input), or null when the batch is
     * dynamic. Graphs built for NPUs take exactly this many rows per call.
     */
    public Integer staticRows() {
      if (inputs.isEmpty() || inputs.get(0).shape().isEmpty()) {
        return null;
      }
      Object first = inputs.get(0).shape().get(0);
      return first instanceof Long ? Math.toIntExact((Long) first) : null;
    }

    /**
     * The fixed number of beams per user of a decoder (second axis of its {@code prefix} input),
     * or null when it is dynamic or the graph has no such input.
     */
    public Integer staticBeams() {
      for (TensorSpec input : inputs) {
        if (input.name().equals("prefix") && input.shape().size() == 3) {
          Object beams = input.shape().get(1);
          return beams instanceof Long ? Math.toIntExact((Long) beams) : null;
        }
      }
      return null;
    }
  }

  /** How semantic IDs are laid out: levels, codes per level, and the tables that hold them. */
  public static final class SemanticIdLayout {
    private final int numLevels;
    private final int codebookSize;
    private final String table;
    private final String tokenizer;

    SemanticIdLayout(int numLevels, int codebookSize, String table, String tokenizer) {
      if (numLevels < 1 || codebookSize < 2) {
        throw new BundleException(
            "manifest: semantic_ids has " + numLevels + " levels of " + codebookSize + " codes");
      }
      this.numLevels = numLevels;
      this.codebookSize = codebookSize;
      this.table = table;
      this.tokenizer = tokenizer;
    }

    /** Levels, including the collision level (the last one). */
    public int numLevels() {
      return numLevels;
    }

    public int codebookSize() {
      return codebookSize;
    }

    /** The {@code .npy} file: (num_items, num_levels) int32, row i = catalogue item i. */
    public String table() {
      return table;
    }

    /** tokenizer.json: token ids of the codes and special tokens. */
    public String tokenizer() {
      return tokenizer;
    }

    /** The code that marks "not chosen yet" in a decoder prefix. */
    public int emptyCode() {
      return codebookSize;
    }
  }

  /** The expected digest and size of one bundle file. */
  public static final class FileEntry {
    private final String sha256;
    private final long bytes;

    FileEntry(String sha256, long bytes) {
      this.sha256 = sha256;
      this.bytes = bytes;
    }

    /** Lower-case hex SHA-256 of the file. */
    public String sha256() {
      return sha256;
    }

    public long bytes() {
      return bytes;
    }
  }

  private final int schemaVersion;
  private final String name;
  private final String precision;
  private final List<String> executionProviders;
  private final Map<String, Map<String, String>> providerOptions;
  private final String minOnnxruntime;
  private final int maxLen;
  private final int hidden;
  private final SemanticIdLayout semanticIds;
  private final GraphSpec encoder;
  private final GraphSpec decoder;
  private final String catalog;
  private final int numItems;
  private final Map<String, Long> specialTokens;
  private final Map<String, Long> search;
  private final Map<String, FileEntry> files;
  private final Integer staticBatch;
  private final String adapter;
  private final long version;
  private final String parent;
  private final Map<String, Object> producer;
  private final Map<String, Object> quality;

  private Manifest(Fields m) {
    schemaVersion = m.integer("schema_version");
    name = m.string("name");
    precision = m.string("precision");
    executionProviders = Collections.unmodifiableList(m.strings("execution_providers"));
    Map<String, Map<String, String>> options = new LinkedHashMap<>();
    Fields optionsField = m.optionalFields("provider_options");
    for (String provider : optionsField.keys()) {
      options.put(provider, Collections.unmodifiableMap(optionsField.object(provider).strings()));
    }
    providerOptions = Collections.unmodifiableMap(options);
    minOnnxruntime = m.string("min_onnxruntime");
    maxLen = m.integer("max_len");
    hidden = m.integer("hidden");
    Fields sid = m.object("semantic_ids");
    semanticIds =
        new SemanticIdLayout(
            sid.integer("num_levels"),
            sid.integer("codebook_size"),
            sid.string("table"),
            sid.string("tokenizer"));
    encoder = graph(m.object("encoder"));
    decoder = graph(m.object("decoder"));
    catalog = m.string("catalog");
    numItems = m.integer("num_items");
    specialTokens = Collections.unmodifiableMap(m.object("special_tokens").integerValues());
    search = Collections.unmodifiableMap(m.object("search").integerValues());
    Map<String, FileEntry> entries = new TreeMap<>();
    Fields filesField = m.object("files");
    for (String file : filesField.keys()) {
      checkFileName(file);
      Fields entry = filesField.object(file);
      entries.put(file, new FileEntry(entry.string("sha256"), entry.longInteger("bytes")));
    }
    files = Collections.unmodifiableMap(entries);
    staticBatch = m.optionalInteger("static_batch");
    adapter = m.optionalString("adapter");
    version = m.version();
    parent = m.parent();
    producer = Collections.unmodifiableMap(m.optionalObject("producer"));
    quality = Collections.unmodifiableMap(m.optionalObject("quality"));
    validate();
  }

  /**
   * Reads and validates {@code folder/manifest.json}.
   *
   * @throws BundleException the file is missing, not JSON, or not a valid manifest.
   */
  public static Manifest read(Path folder) {
    return read(folder, readBytes(folder));
  }

  /** The bytes of {@code folder/manifest.json}. */
  static byte[] readBytes(Path folder) {
    Path path = folder.resolve("manifest.json");
    try {
      return Files.readAllBytes(path);
    } catch (NoSuchFileException e) {
      throw new BundleException(
          folder + " is not a pocketrec bundle: it has no manifest.json (make one with "
              + "`pocketrec export RUN_DIR --out BUNDLE_DIR`)");
    } catch (IOException e) {
      throw new BundleException("cannot read " + path + ": " + e.getMessage(), e);
    }
  }

  /**
   * Parses manifest bytes already read from {@code folder} (the ones a signature was checked
   * on: reading the file again could see another one).
   */
  static Manifest read(Path folder, byte[] data) {
    Path path = folder.resolve("manifest.json");
    String text = new String(data, StandardCharsets.UTF_8);
    Object json;
    try {
      json = Json.parse(text);
    } catch (IllegalArgumentException e) {
      throw new BundleException(
          path + " is not valid JSON (" + e.getMessage() + "); the bundle is corrupt", e);
    }
    if (!(json instanceof Map)) {
      throw new BundleException(path + " must hold a JSON object");
    }
    return parse(json);
  }

  /**
   * Validates a parsed manifest; newer schemas are refused with an upgrade hint.
   *
   * @throws BundleException if a field is missing or invalid.
   */
  public static Manifest parse(Object json) {
    if (!(json instanceof Map)) {
      throw new BundleException("manifest: must be a JSON object");
    }
    Fields fields = new Fields((Map<?, ?>) json, "manifest");
    int version = fields.integer("schema_version");
    if (version > SCHEMA_VERSION) {
      throw new BundleException(
          "this bundle's manifest has schema version " + version + ", but this pocketrec core "
              + "reads up to version " + SCHEMA_VERSION + "; upgrade the app's pocketrec core "
              + "(dev.pocketrec.core) or export the bundle with a pocketrec version that writes "
              + "schema version " + SCHEMA_VERSION);
    }
    if (version < 1) {
      throw new BundleException("manifest: schema_version " + version + " is not valid");
    }
    if (version < SCHEMA_VERSION) {
      throw new BundleException(
          "this bundle's manifest has schema version " + version + ": its decoder takes one "
              + "history copy per beam, and this pocketrec core reads version " + SCHEMA_VERSION
              + " (each history once, beams as a grid); export it again with "
              + "`pocketrec export RUN_DIR --out BUNDLE_DIR`");
    }
    return new Manifest(fields);
  }

  /**
   * Checks that every file listed in the manifest exists in {@code folder} with the recorded
   * size and SHA-256, in file-name order.
   *
   * @throws BundleException naming the first file that is missing or altered.
   */
  public void verifyIntegrity(Path folder) {
    for (Map.Entry<String, FileEntry> entry : files.entrySet()) {
      String file = entry.getKey();
      Path path = folder.resolve(file);
      if (!Files.isRegularFile(path)) {
        throw new BundleException(
            "bundle file " + file + " is missing from " + folder
                + "; re-export or re-download the bundle");
      }
      try {
        if (Files.size(path) != entry.getValue().bytes()
            || !sha256(path).equals(entry.getValue().sha256())) {
          throw new BundleException(
              "bundle file " + file + " does not match its sha256 in manifest.json: it was "
                  + "altered or corrupted after export; re-export or re-download the bundle");
        }
      } catch (IOException e) {
        throw new BundleException("cannot read bundle file " + file + ": " + e.getMessage(), e);
      }
    }
  }

  /**
   * Checks that an ONNX Runtime version (such as {@code "1.22.0"}) is at least the bundle's
   * {@link #minOnnxruntime()}; versions compare by their first three numbers.
   *
   * @throws IncompatibleRuntimeException if it is older.
   */
  public void checkRuntime(String onnxruntimeVersion) {
    if (compareVersions(onnxruntimeVersion, minOnnxruntime) < 0) {
      throw new IncompatibleRuntimeException(
          "this bundle needs onnxruntime >= " + minOnnxruntime + ", but the app has "
              + onnxruntimeVersion + "; upgrade the app's com.microsoft.onnxruntime dependency to "
              + minOnnxruntime + " or newer");
    }
  }

  /** Lower-case hex SHA-256 of a file, read in 1 MiB chunks. */
  public static String sha256(Path file) throws IOException {
    MessageDigest digest;
    try {
      digest = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every Java platform provides SHA-256", e);
    }
    byte[] buffer = new byte[1 << 20];
    try (InputStream in = Files.newInputStream(file)) {
      for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
        digest.update(buffer, 0, n);
      }
    }
    return hex(digest.digest());
  }

  /** Lower-case hex digits of {@code bytes}. */
  static String hex(byte[] bytes) {
    StringBuilder hex = new StringBuilder();
    for (byte b : bytes) {
      hex.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
    }
    return hex.toString();
  }

  static int compareVersions(String a, String b) {
    int[] x = versionNumbers(a);
    int[] y = versionNumbers(b);
    for (int i = 0; i < 3; i++) {
      if (x[i] != y[i]) {
        return Integer.compare(x[i], y[i]);
      }
    }
    return 0;
  }

  private static int[] versionNumbers(String version) {
    int[] numbers = new int[3];
    Matcher matcher = VERSION_NUMBER.matcher(version);
    for (int i = 0; i < 3 && matcher.find(); i++) {
      numbers[i] = Integer.parseInt(matcher.group());
    }
    return numbers;
  }

  private void validate() {
    if (!PRECISIONS.contains(precision)) {
      throw new BundleException(
          "manifest: precision '" + precision + "' is not one of " + PRECISIONS);
    }
    if (maxLen <= 0 || numItems <= 0) {
      throw new BundleException("manifest: max_len and num_items must be positive");
    }
    TreeSet<String> missing =
        new TreeSet<>(
            Arrays.asList(
                encoder.file(),
                decoder.file(),
                catalog,
                semanticIds.table(),
                semanticIds.tokenizer()));
    missing.addAll(encoder.compiled().values());
    missing.addAll(decoder.compiled().values());
    if (adapter != null) {
      missing.add(adapter);
    }
    missing.removeAll(files.keySet());
    if (!missing.isEmpty()) {
      throw new BundleException(
          "manifest: files " + missing + " are used but have no sha256 entry");
    }
  }

  private static void checkFileName(String file) {
    boolean escapes = file.startsWith("/") || file.startsWith("\\") || file.contains(":");
    for (String part : file.split("[/\\\\]")) {
      escapes |= part.equals("..");
    }
    if (escapes || file.isEmpty()) {
      throw new BundleException(
          "manifest: file name '" + file + "' must be a relative path inside the bundle folder");
    }
  }

  private static GraphSpec graph(Fields g) {
    return new GraphSpec(
        g.string("file"),
        tensors(g, "inputs"),
        tensors(g, "outputs"),
        g.optionalFields("compiled").strings());
  }

  private static List<TensorSpec> tensors(Fields graph, String key) {
    List<TensorSpec> out = new ArrayList<>();
    for (Fields t : graph.objects(key)) {
      out.add(new TensorSpec(t.string("name"), t.string("dtype"), t.list("shape")));
    }
    return out;
  }

  public int schemaVersion() {
    return schemaVersion;
  }

  public String name() {
    return name;
  }

  /** One of {@link #PRECISIONS}. */
  public String precision() {
    return precision;
  }

  /** The execution providers the bundle is meant for, in order of preference. */
  public List<String> executionProviders() {
    return executionProviders;
  }

  /** Options per execution provider (for QNN: backend and SoC), often empty. */
  public Map<String, Map<String, String>> providerOptions() {
    return providerOptions;
  }

  public String minOnnxruntime() {
    return minOnnxruntime;
  }

  /** The history window of the model: how many recent items it reads. */
  public int maxLen() {
    return maxLen;
  }

  public int hidden() {
    return hidden;
  }

  public SemanticIdLayout semanticIds() {
    return semanticIds;
  }

  public GraphSpec encoder() {
    return encoder;
  }

  public GraphSpec decoder() {
    return decoder;
  }

  /** The catalogue file: item ids, display metadata and popularity. */
  public String catalog() {
    return catalog;
  }

  public int numItems() {
    return numItems;
  }

  public Map<String, Long> specialTokens() {
    return specialTokens;
  }

  /** Search defaults ({@code beam_width}, {@code top_k}). */
  public Map<String, Long> search() {
    return search;
  }

  /** The default beam width, or null when the manifest has none. */
  public Integer defaultBeamWidth() {
    Long width = search.get("beam_width");
    return width == null ? null : Math.toIntExact(width);
  }

  /** Every bundle file with its expected digest and size, by name. */
  public Map<String, FileEntry> files() {
    return files;
  }

  /**
   * The model id: the SHA-256 (lower-case hex) of the bundle's files other than its shared
   * adapter, as the compact JSON object {@code {"<name>":"<sha256>",...}} with names in code
   * point order and non-ASCII escaped, exactly as the Python SDK's {@code Manifest.model_id}
   * writes it. Every federated version of a bundle keeps it; any other change to the files (a
   * re-export, a new catalogue) changes it. Adapters name it, so one fitted on another model of
   * the same bundle name is refused.
   */
  public String modelId() {
    TreeMap<String, String> named = new TreeMap<>(Manifest::compareCodePoints);
    for (Map.Entry<String, FileEntry> e : files.entrySet()) {
      if (!e.getKey().equals(adapter)) {
        named.put(e.getKey(), e.getValue().sha256());
      }
    }
    StringBuilder json = new StringBuilder("{");
    for (Map.Entry<String, String> e : named.entrySet()) {
      if (json.length() > 1) {
        json.append(',');
      }
      appendAsciiJson(json, e.getKey());
      json.append(':');
      appendAsciiJson(json, e.getValue());
    }
    json.append('}');
    try {
      MessageDigest digest = MessageDigest.getInstance("SHA-256");
      return hex(digest.digest(json.toString().getBytes(StandardCharsets.US_ASCII)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every Java platform provides SHA-256", e);
    }
  }

  /** Python's order of strings: by Unicode code point (not by UTF-16 unit). */
  private static int compareCodePoints(String a, String b) {
    int i = 0;
    int j = 0;
    while (i < a.length() && j < b.length()) {
      int x = a.codePointAt(i);
      int y = b.codePointAt(j);
      if (x != y) {
        return Integer.compare(x, y);
      }
      i += Character.charCount(x);
      j += Character.charCount(y);
    }
    return Integer.compare(a.length() - i, b.length() - j);
  }

  /** A JSON string as Python's json.dumps writes it with ensure_ascii (its default). */
  private static void appendAsciiJson(StringBuilder out, String s) {
    out.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        case '\b' -> out.append("\\b");
        case '\f' -> out.append("\\f");
        default -> {
          if (c < 0x20 || c > 0x7e) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    out.append('"');
  }

  /** The fixed batch of graphs built for NPUs, or null. */
  public Integer staticBatch() {
    return staticBatch;
  }

  /** The file of the bundle's shared code-bias adapter, or null when it has none. */
  public String adapter() {
    return adapter;
  }

  /**
   * The bundle's version: 0 as exported, plus one for each published federated round (it equals
   * the shared adapter's version). Manifests without the key are version 0.
   */
  public long version() {
    return version;
  }

  /** The SHA-256 of the manifest.json this version was derived from, or null for an export. */
  public String parent() {
    return parent;
  }

  /** How the bundle was made: config, command, versions. */
  public Map<String, Object> producer() {
    return producer;
  }

  /** Measured metrics of this bundle. */
  public Map<String, Object> quality() {
    return quality;
  }

  /** Typed access to the fields of one JSON object, with errors that name the field. */
  private static final class Fields {
    private final Map<?, ?> obj;
    private final String where;

    Fields(Map<?, ?> obj, String where) {
      this.obj = obj;
      this.where = where;
    }

    List<String> keys() {
      List<String> keys = new ArrayList<>();
      for (Object key : obj.keySet()) {
        keys.add((String) key);
      }
      return keys;
    }

    private Object need(String key, Class<?> kind, String kindName) {
      if (!obj.containsKey(key)) {
        throw new BundleException("manifest: " + where + " has no '" + key + "'");
      }
      Object value = obj.get(key);
      if (!kind.isInstance(value)) {
        throw new BundleException(
            "manifest: " + where + "." + key + " should be " + kindName + ", got "
                + describe(value));
      }
      return value;
    }

    String string(String key) {
      return (String) need(key, String.class, "a string");
    }

    long longInteger(String key) {
      return (Long) need(key, Long.class, "an integer");
    }

    int integer(String key) {
      long value = longInteger(key);
      if (value != (int) value) {
        throw new BundleException(
            "manifest: " + where + "." + key + " = " + value + " is too large");
      }
      return (int) value;
    }

    Integer optionalInteger(String key) {
      return obj.get(key) == null ? null : integer(key);
    }

    String optionalString(String key) {
      return obj.get(key) == null ? null : string(key);
    }

    /** The object at {@code key}, or an empty one when it is absent or null. */
    Fields optionalFields(String key) {
      return obj.get(key) == null ? new Fields(Collections.emptyMap(), key) : object(key);
    }

    /** Every value of this object, which must be a string (integers are written in decimal). */
    Map<String, String> strings() {
      Map<String, String> out = new LinkedHashMap<>();
      for (String key : keys()) {
        Object value = obj.get(key);
        if (!(value instanceof String || value instanceof Long)) {
          throw new BundleException(
              "manifest: " + where + "." + key + " should be a string, got " + describe(value));
        }
        out.put(key, value.toString());
      }
      return out;
    }

    List<Object> list(String key) {
      List<Object> out = new ArrayList<>();
      for (Object item : (List<?>) need(key, List.class, "a list")) {
        out.add(item);
      }
      return out;
    }

    List<String> strings(String key) {
      List<String> out = new ArrayList<>();
      for (Object item : list(key)) {
        if (!(item instanceof String)) {
          throw new BundleException(
              "manifest: " + where + "." + key + " should hold strings, got " + describe(item));
        }
        out.add((String) item);
      }
      return out;
    }

    Fields object(String key) {
      return new Fields((Map<?, ?>) need(key, Map.class, "an object"), key);
    }

    List<Fields> objects(String key) {
      List<Fields> out = new ArrayList<>();
      for (Object item : list(key)) {
        if (!(item instanceof Map)) {
          throw new BundleException(
              "manifest: " + where + "." + key + " should hold objects, got " + describe(item));
        }
        out.add(new Fields((Map<?, ?>) item, where + "." + key));
      }
      return out;
    }

    /** The manifest's {@code version}: absent means 0; otherwise an integer >= 0. */
    long version() {
      if (!obj.containsKey("version")) {
        return 0;
      }
      Object value = obj.get("version");
      if (!(value instanceof Long) || (Long) value < 0) {
        throw new BundleException(
            "manifest: version must be an integer >= 0, got " + shown(value));
      }
      return (Long) value;
    }

    /** The manifest's {@code parent}: absent or null, or a string. */
    String parent() {
      Object value = obj.get("parent");
      if (value != null && !(value instanceof String)) {
        throw new BundleException(
            "manifest: parent must be a sha256 string, got " + shown(value));
      }
      return (String) value;
    }

    Map<String, Object> optionalObject(String key) {
      Map<String, Object> out = new LinkedHashMap<>();
      if (obj.get(key) != null) {
        for (Map.Entry<?, ?> e : ((Map<?, ?>) need(key, Map.class, "an object")).entrySet()) {
          out.put((String) e.getKey(), e.getValue());
        }
      }
      return out;
    }

    Map<String, Long> integerValues() {
      Map<String, Long> out = new LinkedHashMap<>();
      for (String key : keys()) {
        out.put(key, longInteger(key));
      }
      return out;
    }

    /** A value as the manifest spells it (strings quoted). */
    private static String shown(Object value) {
      return value instanceof String ? "'" + value + "'" : String.valueOf(value);
    }

    private static String describe(Object value) {
      if (value == null) {
        return "null";
      }
      if (value instanceof String) {
        return "a string";
      }
      if (value instanceof Long) {
        return "an integer";
      }
      if (value instanceof java.math.BigInteger) {
        return "an integer too large for 64 bits";
      }
      if (value instanceof Double) {
        return "a float";
      }
      if (value instanceof Boolean) {
        return "a boolean";
      }
      return value instanceof List ? "a list" : "an object";
    }
  }
}
