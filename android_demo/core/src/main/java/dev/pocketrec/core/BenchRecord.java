package dev.pocketrec.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A benchmark record in the {@code pocketrec-bench/1} schema, the one {@code pocketrec bench}
 * writes, so that phone and desktop measurements land in the same tables.
 *
 * <pre>
 * {"format": "pocketrec-bench/1", "what": "recommend(k=10) latency",
 *  "bundle": {"name", "precision", "path",
 *             "bytes": {"graphs", "graphs_without_catalogue_tables",
 *                       "catalogue_tables_in_graphs", "tables"}},
 *  "device": {"kind", "cpu_model", "machine", "cores", "os"},
 *  "runtime": {"onnxruntime", "providers", "threads"},
 *  "settings": {"k", "beam_width", "history_len", "batch", "warmup", "repetitions"},
 *  "latency_ms": {"end_to_end": {"p50", "p90", "p99", "mean"},
 *                 "stages": {"encode": {...}, "decode_level_0": {...}, ...,
 *                            "sdk_search_overhead": {...}}},
 *  "time_in_onnxruntime_share", "throughput_per_s", "batch_latency_ms": {...},
 *  "peak_memory_mb", "config": {...}, "command", "created"}
 * </pre>
 *
 * The keys and their meaning are those of {@code pocketrec bench}; a phone may add details under
 * {@code device} (such as {@code model}, see {@link Builder#deviceDetail}). {@code
 * batch_latency_ms} summarises the throughput rounds, each serving {@code settings.batch}
 * requests one after the other (see {@link Benchmark}).
 */
public final class BenchRecord {

  /** The {@code format} field of benchmark records. */
  public static final String FORMAT = "pocketrec-bench/1";

  /** {@code created} as Python's {@code datetime.isoformat()} writes UTC: "...T03:04:05+00:00". */
  private static final DateTimeFormatter CREATED =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ssxxx");

  private final Map<String, Object> json;

  private BenchRecord(Map<String, Object> json) {
    this.json = json;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The record as JSON-ready maps and lists (read-only). */
  public Map<String, Object> toJson() {
    return Collections.unmodifiableMap(json);
  }

  /** The record as indented JSON text. */
  public String toJsonString() {
    return Json.writePretty(json) + "\n";
  }

  /** Writes the record to {@code file}, replacing it atomically. */
  public void write(Path file) throws IOException {
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    Files.write(tmp, toJsonString().getBytes(StandardCharsets.UTF_8));
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** Collects the parts of a record; every part is required except peak memory and details. */
  public static final class Builder {
    private Map<String, Object> bundle;
    private Map<String, Object> device;
    private final Map<String, Object> deviceDetails = new LinkedHashMap<>();
    private Map<String, Object> runtime;
    private Benchmark.Result result;
    private Double peakMemoryMb;
    private String command;
    private Instant created;

    private Builder() {}

    /**
     * The bundle measured.
     *
     * @param graphBytes bytes of the two portable graphs on disk.
     * @param catalogueTableBytes bytes of catalogue-sized tables inside them ({@link OnnxSizes}).
     * @param tableBytes bytes of every other bundle file, as the manifest lists them.
     * @param path where the bundle was read from.
     */
    public Builder bundle(
        String name,
        String precision,
        long graphBytes,
        long catalogueTableBytes,
        long tableBytes,
        String path) {
      Map<String, Object> bytes = new LinkedHashMap<>();
      bytes.put("graphs", graphBytes);
      bytes.put("graphs_without_catalogue_tables", graphBytes - catalogueTableBytes);
      bytes.put("catalogue_tables_in_graphs", catalogueTableBytes);
      bytes.put("tables", tableBytes);
      bundle = new LinkedHashMap<>();
      bundle.put("name", name);
      bundle.put("precision", precision);
      bundle.put("bytes", bytes);
      bundle.put("path", path);
      return this;
    }

    /**
     * The bundle measured, from an opened {@link Bundle}.
     *
     * @throws BundleException if a graph cannot be read.
     */
    public Builder bundle(Bundle opened) {
      Manifest manifest = opened.manifest();
      return bundle(
          manifest.name(),
          manifest.precision(),
          opened.graphBytes(),
          opened.catalogueTableBytes(),
          opened.tableBytes(),
          opened.folder().toString());
    }

    /**
     * The device.
     *
     * @param kind the device (provider) the benchmark ran on, such as "cpu", "xnnpack", "qnn".
     * @param cpuModel the processor (on Android, the SoC).
     * @param machine the CPU architecture (on Android, the primary ABI).
     * @param cores processors available to the process.
     * @param os operating system and version.
     */
    public Builder device(String kind, String cpuModel, String machine, int cores, String os) {
      device = new LinkedHashMap<>();
      device.put("kind", kind);
      device.put("cpu_model", cpuModel);
      device.put("machine", machine);
      device.put("cores", cores);
      device.put("os", os);
      return this;
    }

    /** An extra device detail after the schema's keys, such as {@code "model"}. */
    public Builder deviceDetail(String key, Object value) {
      deviceDetails.put(key, value);
      return this;
    }

    /**
     * The runtime: ONNX Runtime version, the execution providers in use (most preferred first),
     * intra-op threads (null for ONNX Runtime's choice).
     */
    public Builder runtime(String onnxruntimeVersion, List<String> providers, Integer threads) {
      runtime = new LinkedHashMap<>();
      runtime.put("onnxruntime", onnxruntimeVersion);
      runtime.put("providers", new ArrayList<Object>(providers));
      runtime.put("threads", threads);
      return this;
    }

    /** The measurements (and the configuration they ran with). */
    public Builder result(Benchmark.Result measured) {
      this.result = measured;
      return this;
    }

    /** Peak resident memory in MiB, or null when unknown (see {@link ProcessMemory}). */
    public Builder peakMemoryMb(Double megabytes) {
      this.peakMemoryMb = megabytes;
      return this;
    }

    /** What ran the benchmark, as a user would name it (a command line, an app screen). */
    public Builder command(String what) {
      this.command = what;
      return this;
    }

    /** When the measurement finished. */
    public Builder created(Instant instant) {
      this.created = instant;
      return this;
    }

    /**
     * The record.
     *
     * @throws IllegalStateException if a required part is missing.
     */
    public BenchRecord build() {
      if (bundle == null || device == null || runtime == null || result == null
          || command == null || created == null) {
        throw new IllegalStateException(
            "a benchmark record needs bundle, device, runtime, result, command and created");
      }
      Benchmark.Config config = result.config();
      Map<String, Object> settings = new LinkedHashMap<>();
      settings.put("k", config.k());
      settings.put("beam_width", result.beamWidth());
      settings.put("history_len", result.historyLength());
      settings.put("batch", config.batch());
      settings.put("warmup", config.warmup());
      settings.put("repetitions", config.repetitions());
      Map<String, Object> deviceJson = new LinkedHashMap<>(device);
      deviceJson.putAll(deviceDetails);
      Map<String, Object> json = new LinkedHashMap<>();
      json.put("format", FORMAT);
      json.put("what", "recommend(k=" + config.k() + ") latency");
      json.put("bundle", bundle);
      json.put("device", deviceJson);
      json.put("runtime", runtime);
      json.put("settings", settings);
      json.put("latency_ms", result.latencyJson());
      json.put("time_in_onnxruntime_share", result.modelTimeShare());
      json.put("throughput_per_s", result.throughputPerSecond());
      json.put("batch_latency_ms", Percentiles.of(result.batchRoundMs()).toJson());
      json.put("peak_memory_mb", peakMemoryMb);
      json.put("config", config.toJson());
      json.put("command", command);
      json.put(
          "created",
          OffsetDateTime.ofInstant(created.truncatedTo(ChronoUnit.SECONDS), ZoneOffset.UTC)
              .format(CREATED));
      return new BenchRecord(json);
    }
  }
}
