package dev.pocketrec.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Measures a recommender the way {@code pocketrec bench} does.
 *
 * <p>First the latency of single requests: {@code warmup} untimed, then {@code repetitions}
 * timed {@code recommend(history, k)} calls cycling through 64 seeded histories of {@code
 * historyLen} items, with the time of every model call taken from a {@link TimingListener}
 * (encode, decode level by level; the rest is the core's own work). Then throughput: a batch of
 * {@code batch} other histories is served {@code max(3, min(30, repetitions / 10))} times after
 * {@code max(1, warmup / 10)} untimed rounds. The core serves one request at a time, so a batch
 * is {@code batch} consecutive {@code recommend} calls, where the Python SDK makes one batched
 * call.
 */
public final class Benchmark {

  /** The stage that holds what is not model time: masks, log-softmax, ranking, lookups. */
  public static final String OVERHEAD_STAGE = "sdk_search_overhead";

  /** Histories cycled through by the single-request loop (as in {@code pocketrec bench}). */
  public static final int SINGLE_HISTORIES = 64;

  /** What to measure: the fields of {@code pocketrec bench}'s {@code BenchConfig}. */
  public static final class Config {
    private final String bundle;
    private final String device;
    private final Integer threads;
    private final int batch;
    private final int k;
    private final int warmup;
    private final int repetitions;
    private final Integer historyLen;
    private final long seed;

    private Config(Builder b) {
      bundle = b.bundle;
      device = b.device;
      threads = b.threads;
      batch = b.batch;
      k = b.k;
      warmup = b.warmup;
      repetitions = b.repetitions;
      historyLen = b.historyLen;
      seed = b.seed;
    }

    /** A configuration with {@code pocketrec bench}'s defaults for the given bundle path. */
    public static Builder builder(String bundle) {
      return new Builder(bundle);
    }

    /** The bundle measured (its path, as recorded). */
    public String bundle() {
      return bundle;
    }

    /** The device kind, such as "cpu", "xnnpack" or "qnn". */
    public String device() {
      return device;
    }

    /** Intra-op threads of the sessions, or null for ONNX Runtime's choice. */
    public Integer threads() {
      return threads;
    }

    /** Histories per throughput round. */
    public int batch() {
      return batch;
    }

    public int k() {
      return k;
    }

    public int warmup() {
      return warmup;
    }

    public int repetitions() {
      return repetitions;
    }

    /** Items per history, or null for the model's window. */
    public Integer historyLen() {
      return historyLen;
    }

    public long seed() {
      return seed;
    }

    /** The {@code config} block of a benchmark record. */
    public Map<String, Object> toJson() {
      Map<String, Object> json = new LinkedHashMap<>();
      json.put("bundle", bundle);
      json.put("device", device);
      json.put("threads", threads);
      json.put("batch", batch);
      json.put("k", k);
      json.put("warmup", warmup);
      json.put("repetitions", repetitions);
      json.put("history_len", historyLen);
      json.put("seed", seed);
      return json;
    }

    /** Builds a {@link Config}; unset fields keep {@code pocketrec bench}'s defaults. */
    public static final class Builder {
      private final String bundle;
      private String device = "cpu";
      private Integer threads = 1;
      private int batch = 64;
      private int k = 10;
      private int warmup = 30;
      private int repetitions = 300;
      private Integer historyLen;
      private long seed;

      private Builder(String bundle) {
        this.bundle = bundle;
      }

      public Builder device(String kind) {
        this.device = kind;
        return this;
      }

      public Builder threads(Integer count) {
        this.threads = count;
        return this;
      }

      public Builder batch(int histories) {
        this.batch = histories;
        return this;
      }

      public Builder k(int items) {
        this.k = items;
        return this;
      }

      public Builder warmup(int calls) {
        this.warmup = calls;
        return this;
      }

      public Builder repetitions(int calls) {
        this.repetitions = calls;
        return this;
      }

      public Builder historyLen(Integer items) {
        this.historyLen = items;
        return this;
      }

      public Builder seed(long value) {
        this.seed = value;
        return this;
      }

      /**
       * The configuration.
       *
       * @throws IllegalArgumentException if a count is out of range.
       */
      public Config build() {
        if (bundle == null || device == null) {
          throw new IllegalArgumentException("a benchmark needs a bundle and a device");
        }
        if (batch < 1 || k < 1 || warmup < 0 || repetitions < 1) {
          throw new IllegalArgumentException(
              "need batch >= 1, k >= 1, warmup >= 0 and repetitions >= 1");
        }
        if ((threads != null && threads < 1) || (historyLen != null && historyLen < 1)) {
          throw new IllegalArgumentException("threads and history_len must be positive if set");
        }
        return new Config(this);
      }
    }
  }

  /** The samples of one benchmark run, in milliseconds, and the settings that produced them. */
  public static final class Result {
    private final Config config;
    private final int beamWidth;
    private final int historyLength;
    private final double[] endToEnd;
    private final double[] inside;
    private final Map<String, double[]> stages;
    private final double[] batchRounds;

    Result(
        Config config,
        int beamWidth,
        int historyLength,
        double[] endToEnd,
        double[] inside,
        Map<String, double[]> stages,
        double[] batchRounds) {
      this.config = config;
      this.beamWidth = beamWidth;
      this.historyLength = historyLength;
      this.endToEnd = endToEnd;
      this.inside = inside;
      this.stages = stages;
      this.batchRounds = batchRounds;
    }

    public Config config() {
      return config;
    }

    /** The beam width the requests ran with: max(k, the bundle's default). */
    public int beamWidth() {
      return beamWidth;
    }

    public int historyLength() {
      return historyLength;
    }

    public int repetitions() {
      return endToEnd.length;
    }

    /** Milliseconds of each timed {@code recommend} call. */
    public double[] endToEndMs() {
      return endToEnd.clone();
    }

    /** Stage names in order: encode, decode_level_0, ..., then {@value #OVERHEAD_STAGE}. */
    public List<String> stageNames() {
      return Collections.unmodifiableList(new ArrayList<>(stages.keySet()));
    }

    /** Milliseconds spent in one stage, per timed call. */
    public double[] stageMs(String stage) {
      double[] samples = stages.get(stage);
      if (samples == null) {
        throw new IllegalArgumentException("no stage '" + stage + "'; stages: " + stages.keySet());
      }
      return samples.clone();
    }

    /** Milliseconds of each timed throughput round ({@code batch} requests). */
    public double[] batchRoundMs() {
      return batchRounds.clone();
    }

    public Percentiles endToEnd() {
      return Percentiles.of(endToEnd);
    }

    /** Requests per second over the throughput rounds. */
    public double throughputPerSecond() {
      return (double) config.batch() * batchRounds.length / (PairwiseSum.sum(batchRounds) / 1e3);
    }

    /** The share of the single requests' time spent inside the model runner. */
    public double modelTimeShare() {
      return PairwiseSum.sum(inside) / PairwiseSum.sum(endToEnd);
    }

    /** {@code {"end_to_end": {...}, "stages": {"encode": {...}, ...}}}. */
    public Map<String, Object> latencyJson() {
      Map<String, Object> stageJson = new LinkedHashMap<>();
      for (Map.Entry<String, double[]> stage : stages.entrySet()) {
        stageJson.put(stage.getKey(), Percentiles.of(stage.getValue()).toJson());
      }
      Map<String, Object> json = new LinkedHashMap<>();
      json.put("end_to_end", endToEnd().toJson());
      json.put("stages", stageJson);
      return json;
    }
  }

  private Benchmark() {}

  /**
   * Runs the benchmark described by {@code config} (its bundle, device and threads fields are
   * only recorded: {@code recommender} already runs on them).
   *
   * @throws IllegalArgumentException if the history length exceeds the catalogue.
   * @throws InvalidRequestException if k exceeds the catalogue.
   */
  public static Result run(Recommender recommender, Config config) {
    List<String> ids = recommender.catalog().itemIds();
    int length = config.historyLen() != null ? config.historyLen() : recommender.window();
    int k = config.k();
    List<List<String>> histories = randomHistories(ids, SINGLE_HISTORIES, length, config.seed());
    Map<String, Long> call = new LinkedHashMap<>();
    Recommender timed =
        recommender.withTimingListener(
            (stage, nanos) -> call.put(stage, call.getOrDefault(stage, 0L) + nanos));
    for (int i = 0; i < config.warmup(); i++) {
      timed.recommend(histories.get(i % histories.size()), k);
    }
    List<String> names = new ArrayList<>();
    names.add("encode");
    for (int level = 0; level < recommender.numLevels(); level++) {
      names.add(TimingListener.decodeStage(level));
    }
    int reps = config.repetitions();
    Map<String, double[]> stages = new LinkedHashMap<>();
    for (String name : names) {
      stages.put(name, new double[reps]);
    }
    double[] endToEnd = new double[reps];
    double[] inside = new double[reps];
    double[] overhead = new double[reps];
    for (int i = 0; i < reps; i++) {
      call.clear();
      long start = System.nanoTime();
      timed.recommend(histories.get(i % histories.size()), k);
      endToEnd[i] = (System.nanoTime() - start) / 1e6;
      for (String name : names) {
        double ms = call.getOrDefault(name, 0L) / 1e6;
        stages.get(name)[i] = ms;
        inside[i] += ms;
      }
      overhead[i] = endToEnd[i] - inside[i];
    }
    stages.put(OVERHEAD_STAGE, overhead);

    List<List<String>> batch = randomHistories(ids, config.batch(), length, config.seed() + 1);
    int batchReps = Math.max(3, Math.min(30, reps / 10));
    for (int i = 0; i < Math.max(1, config.warmup() / 10); i++) {
      serve(recommender, batch, k);
    }
    double[] rounds = new double[batchReps];
    for (int i = 0; i < batchReps; i++) {
      long start = System.nanoTime();
      serve(recommender, batch, k);
      rounds[i] = (System.nanoTime() - start) / 1e6;
    }
    Integer fallback = recommender.defaultBeamWidth();
    int beamWidth = Math.max(k, fallback == null ? k : fallback);
    return new Result(config, beamWidth, length, endToEnd, inside, stages, rounds);
  }

  private static void serve(Recommender recommender, List<List<String>> histories, int k) {
    for (List<String> history : histories) {
      recommender.recommend(history, k);
    }
  }

  /**
   * {@code count} histories of {@code length} distinct items drawn from {@code itemIds} with a
   * fixed seed, so repeated benchmarks measure the same requests.
   *
   * @throws IllegalArgumentException unless {@code 1 <= length <= itemIds.size()}.
   */
  public static List<List<String>> randomHistories(
      List<String> itemIds, int count, int length, long seed) {
    if (length < 1 || length > itemIds.size()) {
      throw new IllegalArgumentException(
          "history length must lie in [1, " + itemIds.size() + "], got " + length);
    }
    Random random = new Random(seed);
    List<List<String>> histories = new ArrayList<>();
    List<String> pool = new ArrayList<>(itemIds);
    for (int h = 0; h < count; h++) {
      for (int i = 0; i < length; i++) { // partial Fisher-Yates shuffle
        Collections.swap(pool, i, i + random.nextInt(pool.size() - i));
      }
      histories.add(Collections.unmodifiableList(new ArrayList<>(pool.subList(0, length))));
    }
    return Collections.unmodifiableList(histories);
  }
}
