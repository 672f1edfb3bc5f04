package dev.pocketrec.core;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.TreeSet;
import java.util.logging.Logger;

/**
 * Recommendations from a bundle: the JVM port of the Python SDK's {@code
 * pocketrec.Recommender}, with the graphs behind a {@link ModelRunner}.
 *
 * <p>Create it with {@link #fromBundle} (or {@link #builder} from tables alone), then call {@link
 * #recommend}. Given the same model outputs it returns the same items, in the same order, with
 * the same log-probabilities as the Python SDK; golden traces recorded from Python check this.
 *
 * <p>An instance is immutable and holds no per-call state, so it serves concurrent calls if its
 * runner does. {@link #withAdapters}, {@link #withoutAdapters} and {@link #withTimingListener}
 * return new instances that share the tables.
 */
public final class Recommender {

  private static final Logger LOG = Logger.getLogger(Recommender.class.getName());

  private final Tables tables;
  private final ModelRunner runner;
  private final List<CodeBiasAdapter> adapters;
  private final float[][] bias; // the sum of the adapters' biases, or null without adapters
  private final TimingListener timing; // or null

  private Recommender(
      Tables tables, ModelRunner runner, List<CodeBiasAdapter> adapters, TimingListener timing) {
    this.tables = tables;
    this.runner = runner;
    this.adapters = Collections.unmodifiableList(new ArrayList<>(adapters));
    this.bias = adapters.isEmpty() ? null : sum(adapters, numLevels(), codebookSize());
    this.timing = timing;
  }

  /**
   * A recommender for an opened bundle whose graphs {@code runner} runs, applying the bundle's
   * shared adapter when it has one (as the Python SDK does).
   */
  public static Recommender fromBundle(Bundle bundle, ModelRunner runner) {
    Manifest manifest = bundle.manifest();
    Recommender plain =
        builder(bundle.catalog(), bundle.semanticIds(), runner)
            .bundleName(manifest.name())
            .modelId(manifest.modelId())
            .window(manifest.maxLen())
            .codebookSize(manifest.semanticIds().codebookSize())
            .defaultBeamWidth(manifest.defaultBeamWidth())
            .staticRows(manifest.encoder().staticRows(), manifest.decoder().staticBeams())
            .build();
    CodeBiasAdapter shared = bundle.sharedAdapter();
    return shared == null
        ? plain
        : new Recommender(plain.tables, runner, Collections.singletonList(shared), null);
  }

  /** Starts a recommender from its tables; the builder asks for the bundle's settings. */
  public static Builder builder(Catalog catalog, int[][] semanticIds, ModelRunner runner) {
    return new Builder(catalog, semanticIds, runner);
  }

  /**
   * This recommender also applying {@code more} adapters: their biases and those of the adapters
   * it already applies are summed and added to the decoder's logits.
   *
   * @throws InvalidRequestException if an adapter belongs to another bundle or another model of
   *     this bundle, or has another shape.
   */
  public Recommender withAdapters(List<CodeBiasAdapter> more) {
    for (CodeBiasAdapter a : more) {
      if (!a.bundle().equals(tables.bundleName)
          || a.numLevels() != numLevels()
          || a.codebookSize() != codebookSize()) {
        throw new InvalidRequestException(
            "adapter for bundle '" + a.bundle() + "' with shape [" + a.numLevels() + ", "
                + a.codebookSize() + "] does not fit bundle '" + tables.bundleName + "' (["
                + numLevels() + ", " + codebookSize() + "]); fit it on this bundle");
      }
      if (a.model() != null && tables.modelId != null && !a.model().equals(tables.modelId)) {
        String fix =
            a.kind().equals("personal")
                ? "fit it again on this bundle"
                : "use the shared adapter published with this bundle";
        throw new InvalidRequestException(
            "this " + a.kind() + " adapter was fitted on another model of bundle '" + a.bundle()
                + "' (another export, or a changed catalogue), whose semantic IDs may mean other "
                + "items; " + fix);
      }
    }
    List<CodeBiasAdapter> all = new ArrayList<>(adapters);
    all.addAll(more);
    return new Recommender(tables, runner, all, timing);
  }

  /** This recommender without any adapter: the raw shared model. */
  public Recommender withoutAdapters() {
    return new Recommender(tables, runner, Collections.<CodeBiasAdapter>emptyList(), timing);
  }

  /** The adapters applied at recommend time (the bundle's shared one first). */
  public List<CodeBiasAdapter> adapters() {
    return adapters;
  }

  /** This recommender reporting the duration of each model call to {@code listener}. */
  public Recommender withTimingListener(TimingListener listener) {
    return new Recommender(tables, runner, adapters, listener);
  }

  /**
   * The {@code k} items the user most likely wants next, with the defaults: history items
   * excluded, unknown ids dropped, the bundle's beam width.
   */
  public List<Recommendation> recommend(List<?> history, int k) {
    return recommend(history, k, true, UnknownPolicy.DROP, null);
  }

  /**
   * The {@code k} items the user most likely wants next, best first.
   *
   * @param history item ids the user interacted with, oldest first: strings, or integers (looked
   *     up as their decimal string). Only the most recent {@link #window()} known items are read.
   *     An empty history gets the most popular items.
   * @param k how many items, 1 to the catalogue size.
   * @param excludeHistory leave out items already in the history.
   * @param unknown what to do with ids the catalogue does not have.
   * @param beamWidth beams per level, or null for the bundle's default (at least {@code k});
   *     wider is slower and a little more accurate.
   * @return up to {@code k} recommendations (fewer only when the search cannot reach k items).
   * @throws InvalidRequestException k or beamWidth out of range, unknown null, or a history
   *     entry that is not an id.
   * @throws UnknownItemException with {@link UnknownPolicy#RAISE}, ids not in the catalogue.
   */
  public List<Recommendation> recommend(
      List<?> history, int k, boolean excludeHistory, UnknownPolicy unknown, Integer beamWidth) {
    int items = tables.catalog.size();
    if (k < 1 || k > items) {
      throw new InvalidRequestException(
          "k must be an integer in [1, " + items + "] (the catalogue size), got " + k);
    }
    if (unknown == null) {
      throw new InvalidRequestException("unknown must be UnknownPolicy.DROP or RAISE, got null");
    }
    if (beamWidth != null && beamWidth < 1) {
      throw new InvalidRequestException("beam_width must be a positive integer, got " + beamWidth);
    }
    int[] rows = rows(history, unknown);
    if (rows.length == 0) {
      return coldStart(k);
    }
    Integer fallback = tables.defaultBeamWidth != null ? tables.defaultBeamWidth : k;
    int width = Math.max(k, beamWidth != null ? beamWidth : fallback);
    int[] exclude = excludeHistory ? sortedUnique(rows) : null;
    int extra = exclude == null ? 0 : Math.min(exclude.length, Math.max(width, tables.window));
    int[] recent = recent(rows);
    float[][] memory = encode(recent);
    boolean[] mask = new boolean[recent.length];
    for (int j = 0; j < recent.length; j++) {
      mask[j] = recent[j] >= 0;
    }
    BeamSearch.Step step = (prefix, level) -> decode(memory, mask, prefix, level);
    BeamSearch.Result found = BeamSearch.search(step, tables.index, width, k, exclude, extra);
    // The extra beams are capped so that long histories stay fast; when the excluded items
    // still crowd the beams out, search again with one beam per excluded item (as the Python
    // SDK does), so a list is short only when the catalogue is.
    if (exclude != null
        && extra < exclude.length
        && countFound(found) < Math.min(k, items - exclude.length)) {
      found = BeamSearch.search(step, tables.index, width, k, exclude, exclude.length);
    }
    int[] itemRows = found.items();
    double[] logProbs = found.logProbs();
    int[][] codes = found.semanticIds();
    List<Recommendation> out = new ArrayList<>();
    for (int j = 0; j < itemRows.length; j++) {
      if (itemRows[j] >= 0) {
        out.add(recommendation(itemRows[j], logProbs[j], codes[j]));
      }
    }
    return Collections.unmodifiableList(out);
  }

  private static int countFound(BeamSearch.Result result) {
    int count = 0;
    for (int row : result.items()) {
      if (row >= 0) {
        count++;
      }
    }
    return count;
  }

  /** The name of the bundle (its manifest's {@code name}). */
  public String bundleName() {
    return tables.bundleName;
  }

  public Catalog catalog() {
    return tables.catalog;
  }

  /** How many of the most recent history items the model reads ({@code max_len}). */
  public int window() {
    return tables.window;
  }

  public int numLevels() {
    return tables.index.numLevels();
  }

  public int codebookSize() {
    return tables.index.codebookSize();
  }

  /** The beam width used when a request gives none and k is smaller, or null (then k). */
  public Integer defaultBeamWidth() {
    return tables.defaultBeamWidth;
  }

  /** Catalogue rows of the history ids, in order, after dropping (or refusing) unknown ones. */
  private int[] rows(List<?> history, UnknownPolicy unknown) {
    if (history == null) {
      throw new InvalidRequestException("history must be a list of item ids, got null");
    }
    List<String> missing = new ArrayList<>();
    int[] rows = new int[history.size()];
    int count = 0;
    int position = 0;
    for (Object item : history) {
      String id = idOf(item, position++);
      int row = tables.catalog.rowOf(id);
      if (row < 0) {
        missing.add(id);
      } else {
        rows[count++] = row;
      }
    }
    if (!missing.isEmpty()) {
      if (unknown == UnknownPolicy.RAISE) {
        throw new UnknownItemException(missing);
      }
      LOG.warning(
          "dropped " + missing.size() + " history items not in the catalogue (first: '"
              + missing.get(0) + "'); pass UnknownPolicy.RAISE to fail instead");
    }
    return Arrays.copyOf(rows, count);
  }

  private static String idOf(Object item, int position) {
    if (item instanceof String) {
      return (String) item;
    }
    if (item instanceof Integer
        || item instanceof Long
        || item instanceof Short
        || item instanceof Byte
        || item instanceof BigInteger) {
      return item.toString();
    }
    String shown = item == null ? "null" : item + " (" + item.getClass().getSimpleName() + ")";
    throw new InvalidRequestException(
        "history[" + position + "] is " + shown + "; item ids are strings or integers, as in "
            + "the catalogue");
  }

  /** The last {@code window} rows, left-padded with -1. */
  private int[] recent(int[] rows) {
    int[] recent = new int[tables.window];
    Arrays.fill(recent, -1);
    int n = Math.min(rows.length, recent.length);
    System.arraycopy(rows, rows.length - n, recent, recent.length - n, n);
    return recent;
  }

  private static int[] sortedUnique(int[] rows) {
    TreeSet<Integer> unique = new TreeSet<>();
    for (int row : rows) {
      unique.add(row);
    }
    int[] out = new int[unique.size()];
    int i = 0;
    for (int row : unique) {
      out[i++] = row;
    }
    return out;
  }

  /**
   * The most popular items. Nothing is excluded: a history with no known item has nothing to
   * exclude.
   */
  private List<Recommendation> coldStart(int k) {
    List<Recommendation> out = new ArrayList<>();
    for (int j = 0; j < k; j++) {
      int row = tables.popularityOrder[j];
      out.add(recommendation(row, tables.popularityLogProb[row], tables.semanticIds[row]));
    }
    return Collections.unmodifiableList(out);
  }

  private Recommendation recommendation(int row, double logProb, int[] codes) {
    return new Recommendation(
        tables.catalog.itemId(row), logProb, codes, tables.catalog.metadata(row));
  }

  /** Memory (window, hidden) of one history, through the encoder (padded to a static batch). */
  private float[][] encode(int[] recent) {
    int levels = tables.index.numLevels();
    long[][] codes = new long[recent.length][levels];
    long[] rows = new long[recent.length];
    for (int j = 0; j < recent.length; j++) {
      rows[j] = recent[j] + 1L;
      if (recent[j] >= 0) {
        for (int c = 0; c < levels; c++) {
          codes[j][c] = tables.semanticIds[recent[j]][c];
        }
      }
    }
    int batch = tables.encoderRows == null ? 1 : tables.encoderRows;
    long[][][] batchCodes = new long[batch][][];
    long[][] batchRows = new long[batch][];
    Arrays.fill(batchCodes, codes); // padding repeats the last (only) row, as the Python SDK does
    Arrays.fill(batchRows, rows);
    long start = System.nanoTime();
    float[][][] memory = runner.encode(batchCodes, batchRows);
    report("encode", start);
    if (memory.length != batch || memory[0].length != recent.length) {
      throw new BundleException(
          "the encoder returned memory for " + memory.length + " histories of "
              + (memory.length > 0 ? memory[0].length : 0) + " steps; expected " + batch + " of "
              + recent.length + ": the graph does not match the manifest");
    }
    return memory[0];
  }

  /**
   * The decoder's logits for every beam of the one user, in chunks of beams when the graph has
   * fixed shapes (it then takes the encoder's batch of users, padded with the same user).
   */
  private float[][] decode(float[][] memory, boolean[] mask, long[][] prefix, int level) {
    int beams = prefix.length;
    int chunk = tables.decoderRows == null ? beams : tables.decoderRows;
    int users = tables.encoderRows == null || tables.decoderRows == null ? 1 : tables.encoderRows;
    float[][][] userMemory = new float[users][][];
    boolean[][] userMask = new boolean[users][];
    Arrays.fill(userMemory, memory);
    Arrays.fill(userMask, mask);
    float[][] logits = new float[beams][];
    for (int start = 0; start < beams; start += chunk) {
      int stop = Math.min(start + chunk, beams);
      long[][] chunkPrefix = new long[chunk][];
      for (int r = 0; r < chunk; r++) {
        chunkPrefix[r] = prefix[Math.min(start + r, stop - 1)]; // pad with the last row
      }
      long[][][] userPrefix = new long[users][][];
      Arrays.fill(userPrefix, chunkPrefix);
      long begin = System.nanoTime();
      float[][][] out = runner.decode(userMemory, userMask, userPrefix, level);
      report(TimingListener.decodeStage(level), begin);
      int k = tables.index.codebookSize();
      if (out.length != users || out[0].length != chunk || out[0][0].length != k) {
        throw new BundleException(
            "the decoder returned " + out.length + " x " + (out.length > 0 ? out[0].length : 0)
                + " x " + (out.length > 0 && out[0].length > 0 ? out[0][0].length : 0)
                + " logits for " + users + " x " + chunk + " beams of " + k + " codes: the "
                + "graph does not match the manifest");
      }
      System.arraycopy(out[0], 0, logits, start, stop - start);
    }
    return bias == null ? logits : addBias(logits, bias[level]);
  }

  /** {@code logits + bias} in float32, as numpy adds two float32 arrays (new arrays). */
  private static float[][] addBias(float[][] logits, float[] bias) {
    float[][] out = new float[logits.length][];
    for (int m = 0; m < logits.length; m++) {
      out[m] = logits[m].clone();
      for (int c = 0; c < bias.length; c++) {
        out[m][c] += bias[c];
      }
    }
    return out;
  }

  /** The sum of the adapters' biases in float32, starting from zeros, in list order. */
  private static float[][] sum(List<CodeBiasAdapter> adapters, int levels, int codes) {
    float[][] total = new float[levels][codes];
    for (CodeBiasAdapter a : adapters) {
      for (int level = 0; level < levels; level++) {
        float[] row = a.level(level);
        for (int c = 0; c < codes; c++) {
          total[level][c] += row[c];
        }
      }
    }
    return total;
  }

  private void report(String stage, long startNanos) {
    if (timing != null) {
      timing.onStage(stage, System.nanoTime() - startNanos);
    }
  }

  /** Builds a {@link Recommender} from tables and the bundle's settings. */
  public static final class Builder {
    private final Catalog catalog;
    private final int[][] semanticIds;
    private final ModelRunner runner;
    private String bundleName;
    private String modelId;
    private int window;
    private int codebookSize;
    private Integer defaultBeamWidth;
    private Integer encoderRows;
    private Integer decoderRows;

    private Builder(Catalog catalog, int[][] semanticIds, ModelRunner runner) {
      this.catalog = catalog;
      this.semanticIds = semanticIds;
      this.runner = runner;
    }

    /** The bundle's name; adapters must name the same bundle. Required. */
    public Builder bundleName(String name) {
      this.bundleName = name;
      return this;
    }

    /**
     * The bundle's {@link Manifest#modelId}; adapters that name another model are refused. Null
     * (the default) accepts an adapter of any model of the bundle's name.
     */
    public Builder modelId(String id) {
      this.modelId = id;
      return this;
    }

    /** The history window ({@code max_len}). Required. */
    public Builder window(int maxLen) {
      this.window = maxLen;
      return this;
    }

    /** Codes per level. Required. */
    public Builder codebookSize(int size) {
      this.codebookSize = size;
      return this;
    }

    /** The manifest's {@code search.beam_width}, or null for none. */
    public Builder defaultBeamWidth(Integer width) {
      this.defaultBeamWidth = width;
      return this;
    }

    /** Fixed batches of the encoder and decoder graphs (null where dynamic). */
    public Builder staticRows(Integer encoder, Integer decoder) {
      this.encoderRows = encoder;
      this.decoderRows = decoder;
      return this;
    }

    /**
     * The recommender.
     *
     * @throws BundleException if the settings or tables are inconsistent.
     */
    public Recommender build() {
      if (bundleName == null || window < 1 || codebookSize < 2 || runner == null) {
        throw new BundleException(
            "a recommender needs a bundle name, a window >= 1, a codebook size >= 2 and a runner");
      }
      if (semanticIds.length != catalog.size()) {
        throw new BundleException(
            "the semantic-ID table has " + semanticIds.length + " rows for "
                + catalog.size() + " catalogue items");
      }
      if ((encoderRows != null && encoderRows < 1) || (decoderRows != null && decoderRows < 1)) {
        throw new BundleException("static batches must be positive");
      }
      PrefixIndex index;
      try {
        index = new PrefixIndex(semanticIds, codebookSize);
      } catch (IllegalArgumentException e) {
        throw new BundleException("the semantic-ID table is invalid: " + e.getMessage(), e);
      }
      return new Recommender(
          new Tables(this, index), runner, Collections.<CodeBiasAdapter>emptyList(), null);
    }
  }

  /** What every copy of a recommender shares: tables, index and settings. */
  private static final class Tables {
    final String bundleName;
    final String modelId; // or null
    final Catalog catalog;
    final int[][] semanticIds;
    final PrefixIndex index;
    final int window;
    final Integer defaultBeamWidth;
    final Integer encoderRows;
    final Integer decoderRows;
    final double[] popularityLogProb;
    final int[] popularityOrder;

    Tables(Builder b, PrefixIndex index) {
      bundleName = b.bundleName;
      modelId = b.modelId;
      catalog = b.catalog;
      semanticIds = new int[b.semanticIds.length][];
      for (int i = 0; i < semanticIds.length; i++) {
        semanticIds[i] = b.semanticIds[i].clone();
      }
      this.index = index;
      window = b.window;
      defaultBeamWidth = b.defaultBeamWidth;
      encoderRows = b.encoderRows;
      decoderRows = b.decoderRows;
      // As the Python SDK: pop = max(popularity, 0) + 1e-9; log(pop / sum(pop)); stable order.
      double[] pop = catalog.popularity();
      for (int i = 0; i < pop.length; i++) {
        pop[i] = Math.max(pop[i], 0.0) + 1e-9;
      }
      double total = PairwiseSum.sum(pop);
      popularityLogProb = new double[pop.length];
      for (int i = 0; i < pop.length; i++) {
        popularityLogProb[i] = Math.log(pop[i] / total);
      }
      popularityOrder = Ranking.top(pop, pop.length);
    }
  }
}
