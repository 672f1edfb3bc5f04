package dev.pocketrec.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A code-bias adapter for on-device personalization: one bias per code of every level, added to
 * the decoder's logits before the prefix constraint.
 *
 * <p>Because only codes that continue a valid prefix are ever candidates, an adapter can reorder
 * items but never make a recommendation invalid. Adapters are small ({@code num_levels x
 * codebook_size} floats), need no change to the graphs, and add up: the bundle's shared adapter
 * and a personal one learned on the phone apply together ({@link Recommender#withAdapters}).
 *
 * <p>The file format is the Python SDK's ({@code pocketrec._adapter.Adapter}): {@code {"format":
 * "pocketrec-adapter/1", "bundle": "<manifest name>", "kind": "personal" | "shared", "version":
 * n, "bias": {"dtype": "float32", "shape": [L, K], "b64": "..."}, "info": {...}, "model":
 * "<model id>"}}, where {@code kind}, {@code version}, {@code info} and {@code model} are
 * optional. An adapter belongs to the bundle it names, and to the model it names ({@link
 * Manifest#modelId}) when it names one: codes mean different things in another bundle, and may in
 * another export of the same one.
 */
public final class CodeBiasAdapter {

  /** The {@code format} field of adapter files. */
  public static final String FORMAT = "pocketrec-adapter/1";

  private final String bundle;
  private final float[][] bias;
  private final String kind;
  private final long version;
  private final Map<String, Object> info;
  private final String model; // or null: fits any model of the bundle's name

  /** A personal adapter (version 0, no info) for the bundle named {@code bundle}. */
  public CodeBiasAdapter(String bundle, float[][] bias) {
    this(bundle, bias, "personal", 0, Collections.<String, Object>emptyMap(), null);
  }

  /** An adapter for the bundle named {@code bundle} that fits any model of that name. */
  public CodeBiasAdapter(
      String bundle, float[][] bias, String kind, long version, Map<String, Object> info) {
    this(bundle, bias, kind, version, info, null);
  }

  /**
   * An adapter for the bundle named {@code bundle}.
   *
   * @param bias (num_levels, codebook_size) finite values.
   * @param kind "shared" (from the server) or "personal" (fitted on the device).
   * @param version shared-adapter version; each federated round that changes it adds one.
   * @param info free-form JSON-ready details (how it was fitted, on how many events).
   * @param model {@link Manifest#modelId} of the bundle it was fitted on, or null for any model of
   *     the bundle's name.
   * @throws IllegalArgumentException if the table is empty, ragged or holds non-finite values.
   */
  public CodeBiasAdapter(
      String bundle,
      float[][] bias,
      String kind,
      long version,
      Map<String, Object> info,
      String model) {
    if (bundle == null || kind == null || bias.length == 0 || bias[0].length == 0) {
      throw new IllegalArgumentException("an adapter needs a bundle name, a kind and a bias");
    }
    if (model != null && model.isEmpty()) {
      throw new IllegalArgumentException("an adapter's model id must not be empty");
    }
    this.model = model;
    this.bundle = bundle;
    this.kind = kind;
    this.version = version;
    this.info = Collections.unmodifiableMap(new LinkedHashMap<>(info));
    this.bias = new float[bias.length][];
    for (int level = 0; level < bias.length; level++) {
      if (bias[level].length != bias[0].length) {
        throw new IllegalArgumentException("adapter bias rows must all have the same length");
      }
      for (float value : bias[level]) {
        if (!Float.isFinite(value)) {
          throw new IllegalArgumentException("adapter bias values must be finite, got " + value);
        }
      }
      this.bias[level] = bias[level].clone();
    }
  }

  /** A personal adapter that changes nothing, to start learning from. */
  public static CodeBiasAdapter zeros(String bundle, int numLevels, int codebookSize) {
    return new CodeBiasAdapter(bundle, new float[numLevels][codebookSize]);
  }

  /**
   * Reads an adapter file.
   *
   * @throws BundleException if it cannot be read or is not a {@value #FORMAT} file.
   */
  public static CodeBiasAdapter read(Path file) {
    try {
      return parse(Json.parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8)));
    } catch (IOException | IllegalArgumentException e) {
      throw new BundleException("cannot read adapter " + file + ": " + e.getMessage(), e);
    }
  }

  /**
   * Builds an adapter from its parsed JSON form.
   *
   * @throws BundleException if the format, bundle name or bias is missing or malformed.
   */
  public static CodeBiasAdapter parse(Object json) {
    Map<?, ?> map = json instanceof Map ? (Map<?, ?>) json : null;
    if (map == null || !FORMAT.equals(map.get("format"))) {
      throw new BundleException(
          "not a pocketrec adapter: expected a JSON object with \"format\": \"" + FORMAT + "\"");
    }
    Object bundle = map.get("bundle");
    Object kind = map.containsKey("kind") ? map.get("kind") : "personal";
    Object version = map.containsKey("version") ? map.get("version") : 0L;
    Object info = map.containsKey("info") ? map.get("info") : Collections.emptyMap();
    Object model = map.get("model");
    if (!(bundle instanceof String)
        || !(kind instanceof String)
        || !(version instanceof Long)
        || !(info instanceof Map)
        || !(model == null || model instanceof String)) {
      throw new BundleException(
          "adapter needs a \"bundle\" name (string); \"kind\", \"version\", \"info\" and "
              + "\"model\" must be a string, an integer, an object and a string when present");
    }
    NdArray array;
    try {
      array = NdArray.fromJson(map.get("bias"));
    } catch (IllegalArgumentException e) {
      throw new BundleException("adapter bias is malformed: " + e.getMessage(), e);
    }
    int[] shape = array.shape();
    if (array.dtype() != NdArray.DType.FLOAT32 || shape.length != 2) {
      throw new BundleException(
          "adapter bias must be a 2-D float32 array (num_levels, codebook_size), got "
              + array.dtype().numpyName() + " of shape " + Arrays.toString(shape));
    }
    float[] flat = array.toFloats();
    float[][] bias = new float[shape[0]][shape[1]];
    for (int level = 0; level < shape[0]; level++) {
      System.arraycopy(flat, level * shape[1], bias[level], 0, shape[1]);
    }
    Map<String, Object> details = new LinkedHashMap<>();
    for (Map.Entry<?, ?> entry : ((Map<?, ?>) info).entrySet()) {
      details.put((String) entry.getKey(), entry.getValue());
    }
    try {
      return new CodeBiasAdapter(
          (String) bundle, bias, (String) kind, (Long) version, details, (String) model);
    } catch (IllegalArgumentException e) {
      throw new BundleException("adapter is invalid: " + e.getMessage(), e);
    }
  }

  /** The JSON form (see the class comment). */
  public Map<String, Object> toJson() {
    float[] flat = new float[numLevels() * codebookSize()];
    for (int level = 0; level < bias.length; level++) {
      System.arraycopy(bias[level], 0, flat, level * codebookSize(), codebookSize());
    }
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("format", FORMAT);
    json.put("bundle", bundle);
    json.put("kind", kind);
    json.put("version", version);
    json.put("bias", NdArray.ofFloats(flat, numLevels(), codebookSize()).toJson());
    json.put("info", info);
    if (model != null) {
      json.put("model", model);
    }
    return json;
  }

  /** Writes the adapter to {@code file}, replacing it atomically. */
  public void write(Path file) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    Files.write(tmp, (Json.writePretty(toJson()) + "\n").getBytes(StandardCharsets.UTF_8));
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /**
   * This adapter with {@code amount} added to the bias of each code of {@code semanticId}: a
   * simple on-device update that favours items sharing codes (and so, by construction of
   * semantic IDs, content) with an item the user liked.
   *
   * @throws IllegalArgumentException if the semantic ID does not fit the adapter.
   */
  public CodeBiasAdapter withBoost(int[] semanticId, float amount) {
    if (semanticId.length != numLevels()) {
      throw new IllegalArgumentException(
          "a semantic ID of " + semanticId.length + " codes does not fit an adapter of "
              + numLevels() + " levels");
    }
    float[][] boosted = new float[bias.length][];
    for (int level = 0; level < bias.length; level++) {
      if (semanticId[level] < 0 || semanticId[level] >= codebookSize()) {
        throw new IllegalArgumentException(
            "code " + semanticId[level] + " of level " + level + " is outside the codebook");
      }
      boosted[level] = bias[level].clone();
      boosted[level][semanticId[level]] += amount;
    }
    return new CodeBiasAdapter(bundle, boosted, kind, version, info, model);
  }

  /** The name of the bundle this adapter belongs to. */
  public String bundle() {
    return bundle;
  }

  /** {@link Manifest#modelId} of the bundle it was fitted on, or null for any model of the name. */
  public String model() {
    return model;
  }

  /** "shared" or "personal". */
  public String kind() {
    return kind;
  }

  public long version() {
    return version;
  }

  public Map<String, Object> info() {
    return info;
  }

  public int numLevels() {
    return bias.length;
  }

  public int codebookSize() {
    return bias[0].length;
  }

  /** The bias of one code of one level. */
  public float bias(int level, int code) {
    return bias[level][code];
  }

  /** The biases of one level (not a copy: callers must not modify it). */
  float[] level(int level) {
    return bias[level];
  }
}
