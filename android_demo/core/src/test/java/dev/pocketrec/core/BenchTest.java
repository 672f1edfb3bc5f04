package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** Percentiles as numpy computes them, the benchmark loop and the pocketrec-bench/1 record. */
public class BenchTest {

  @Rule public TemporaryFolder temp = new TemporaryFolder();

  /** s[i] = ((i * 37) % 101) / 7.0; expected values: np.percentile and np.mean, float.hex. */
  @Test
  public void percentilesMatchNumpy() {
    int[] sizes = {1, 2, 5, 10, 100, 301};
    double[][] numpy = {
      {0x0.0p+0, 0x0.0p+0, 0x0.0p+0, 0x0.0p+0},
      {0x1.5249249249249p+1, 0x1.3075075075075p+2, 0x1.4ee721a54d881p+2, 0x1.5249249249249p+1},
      {0x1.5249249249249p+2, 0x1.20ea0ea0ea0eap+3, 0x1.4d593bfa2608cp+3, 0x1.3333333333333p+2},
      {0x1.8000000000000p+2, 0x1.8492492492492p+3, 0x1.a99999999999ap+3, 0x1.9e2be2be2be2dp+2},
      {0x1.c492492492492p+2, 0x1.9be2be2be2be4p+3, 0x1.c49dfd1304638p+3, 0x1.c7dce434a9b11p+2},
      {0x1.c924924924925p+2, 0x1.9b6db6db6db6ep+3, 0x1.c492492492492p+3, 0x1.c96a8e279be27p+2}
    };
    for (int s = 0; s < sizes.length; s++) {
      double[] samples = new double[sizes[s]];
      for (int i = 0; i < samples.length; i++) {
        samples[i] = ((i * 37) % 101) / 7.0;
      }
      Percentiles p = Percentiles.of(samples);
      double[] got = {p.p50(), p.p90(), p.p99(), p.mean()};
      assertArrayEquals("n=" + sizes[s], numpy[s], got, 0.0);
    }
    assertEquals(2.5, Percentiles.percentile(new double[] {4, 1, 3, 2}, 50), 0.0);
    assertEquals(3.7, Percentiles.percentile(new double[] {4, 1, 3, 2}, 90), 1e-15);
    assertEquals(4.0, Percentiles.percentile(new double[] {4, 1, 3, 2}, 100), 0.0);
    assertThrows(IllegalArgumentException.class, () -> Percentiles.of(new double[0]));
    assertThrows(
        IllegalArgumentException.class, () -> Percentiles.percentile(new double[] {1}, 101));
  }

  @Test
  public void randomHistoriesAreSeededAndDistinct() {
    List<String> ids = Bundle.open(TestResources.tinyBundle()).catalog().itemIds();
    List<List<String>> a = Benchmark.randomHistories(ids, 8, 5, 1);
    assertEquals(a, Benchmark.randomHistories(ids, 8, 5, 1));
    assertNotEquals(a, Benchmark.randomHistories(ids, 8, 5, 2));
    for (List<String> history : a) {
      assertEquals(5, new HashSet<>(history).size());
      assertTrue(ids.containsAll(history));
    }
    assertThrows(IllegalArgumentException.class, () -> Benchmark.randomHistories(ids, 1, 41, 0));
  }

  @Test
  public void benchmarkTimesEveryStageAndWritesARecord() throws IOException {
    Bundle bundle = Bundle.open(TestResources.tinyBundle());
    Recommender rec = Recommender.fromBundle(bundle, new Fakes.Model(8));
    Benchmark.Config config =
        Benchmark.Config.builder(bundle.folder().toString())
            .device("xnnpack")
            .threads(2)
            .batch(6)
            .warmup(3)
            .repetitions(12)
            .build();
    Benchmark.Result result = Benchmark.run(rec, config);
    assertEquals(
        Arrays.asList(
            "encode", "decode_level_0", "decode_level_1", "decode_level_2", "sdk_search_overhead"),
        result.stageNames());
    assertEquals(12, result.repetitions());
    assertEquals(20, result.beamWidth());
    assertEquals("the model's window", 5, result.historyLength());
    assertEquals("max(3, min(30, 12 / 10)) throughput rounds", 3, result.batchRoundMs().length);
    double[] total = result.endToEndMs();
    double insideTotal = 0;
    for (int i = 0; i < total.length; i++) {
      double inside = 0;
      for (String stage : result.stageNames()) {
        double ms = result.stageMs(stage)[i];
        inside += ms;
        if (!stage.equals(Benchmark.OVERHEAD_STAGE)) {
          assertTrue(stage + " " + ms, ms > 0);
          insideTotal += ms;
        }
      }
      assertEquals("stages add up to the end-to-end time", total[i], inside, 1e-9);
    }

    BenchRecord record =
        BenchRecord.builder()
            .bundle(bundle)
            .device("xnnpack", "Google Tensor G3", "arm64-v8a", 9, "Android 15 (API 35)")
            .deviceDetail("model", "Google Pixel 8")
            .runtime("1.22.0", Arrays.asList("XnnpackExecutionProvider", "CPUExecutionProvider"), 2)
            .result(result)
            .peakMemoryMb(ProcessMemory.peakMegabytes())
            .command("pocketrec android demo: benchmark screen")
            .created(Instant.parse("2026-01-02T03:04:05.678Z"))
            .build();
    Path file = temp.getRoot().toPath().resolve("bench.json");
    record.write(file);
    Map<String, Object> json =
        GoldenTrace.map(Json.parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8)));
    // The keys of export/bench.py's record, in its order.
    assertEquals(
        Arrays.asList("format", "what", "bundle", "device", "runtime", "settings", "latency_ms",
            "time_in_onnxruntime_share", "throughput_per_s", "batch_latency_ms",
            "peak_memory_mb", "config", "command", "created"),
        keys(json));
    assertEquals("pocketrec-bench/1", json.get("format"));
    assertEquals("recommend(k=10) latency", json.get("what"));
    Map<String, Object> bundleJson = GoldenTrace.map(json.get("bundle"));
    assertEquals(Arrays.asList("name", "precision", "bytes", "path"), keys(bundleJson));
    Map<String, Object> bytes = GoldenTrace.map(bundleJson.get("bytes"));
    assertEquals(
        Arrays.asList("graphs", "graphs_without_catalogue_tables", "catalogue_tables_in_graphs",
            "tables"),
        keys(bytes));
    assertEquals(bundle.graphBytes(), bytes.get("graphs"));
    assertEquals(bundle.catalogueTableBytes(), bytes.get("catalogue_tables_in_graphs"));
    assertEquals(
        bundle.graphBytes() - bundle.catalogueTableBytes(),
        bytes.get("graphs_without_catalogue_tables"));
    assertEquals(bundle.tableBytes(), bytes.get("tables"));
    Map<String, Object> device = GoldenTrace.map(json.get("device"));
    assertEquals(
        Arrays.asList("kind", "cpu_model", "machine", "cores", "os", "model"), keys(device));
    assertEquals("arm64-v8a", device.get("machine"));
    assertEquals(
        Arrays.asList("onnxruntime", "providers", "threads"),
        keys(GoldenTrace.map(json.get("runtime"))));
    Map<String, Object> settings = GoldenTrace.map(json.get("settings"));
    assertEquals(
        Arrays.asList("k", "beam_width", "history_len", "batch", "warmup", "repetitions"),
        keys(settings));
    assertEquals(6L, settings.get("batch"));
    assertEquals(5L, settings.get("history_len"));
    assertEquals(12L, settings.get("repetitions"));
    Map<String, Object> latency = GoldenTrace.map(json.get("latency_ms"));
    Map<String, Object> endToEnd = GoldenTrace.map(latency.get("end_to_end"));
    assertEquals(result.endToEnd().p50(), (Double) endToEnd.get("p50"), 0.0);
    assertEquals(Arrays.asList("p50", "p90", "p99", "mean"), keys(endToEnd));
    assertTrue(GoldenTrace.map(latency.get("stages")).containsKey("decode_level_2"));
    double share = (Double) json.get("time_in_onnxruntime_share");
    assertEquals(insideTotal / Arrays.stream(total).sum(), share, 1e-12);
    double[] rounds = result.batchRoundMs();
    double throughput = (Double) json.get("throughput_per_s");
    assertEquals(6 * 3 / (Arrays.stream(rounds).sum() / 1e3), throughput, 1e-9 * throughput);
    assertEquals(
        Percentiles.of(rounds).mean(),
        (Double) GoldenTrace.map(json.get("batch_latency_ms")).get("mean"),
        0.0);
    Map<String, Object> configJson = GoldenTrace.map(json.get("config"));
    assertEquals(
        Arrays.asList("bundle", "device", "threads", "batch", "k", "warmup", "repetitions",
            "history_len", "seed"),
        keys(configJson));
    assertEquals(null, configJson.get("history_len"));
    assertEquals("xnnpack", configJson.get("device"));
    assertEquals("pocketrec android demo: benchmark screen", json.get("command"));
    assertEquals("2026-01-02T03:04:05+00:00", json.get("created"));
  }

  @Test
  public void benchmarkConfigIsChecked() {
    assertThrows(
        IllegalArgumentException.class,
        () -> Benchmark.Config.builder("b").repetitions(0).build());
    assertThrows(
        IllegalArgumentException.class, () -> Benchmark.Config.builder("b").threads(0).build());
    Bundle bundle = Bundle.open(TestResources.tinyBundle());
    Recommender rec = Recommender.fromBundle(bundle, new Fakes.Model(8));
    Benchmark.Config tooLong = Benchmark.Config.builder("b").historyLen(41).build();
    assertThrows(IllegalArgumentException.class, () -> Benchmark.run(rec, tooLong));
  }

  /** The catalogue-sized tables of the tiny bundle's graphs, as export/bench.py counts them. */
  @Test
  public void catalogueTablesAreMeasuredAsThePythonBenchDoes() {
    // onnx.load(...).graph.initializer with dims[0] >= 40: item_emb [41, 16], two biases of 48
    // and 64 values, and a [64, 16] weight, all raw float32: 4 * (656 + 48 + 64 + 1024) bytes.
    assertEquals(7168, Bundle.open(TestResources.tinyBundle()).catalogueTableBytes());
  }

  /** Initializers with packed or unpacked dims, raw or typed data, and fields to skip. */
  @Test
  public void onnxSizesReadsTheProtobufWireFormat() {
    byte[] unpacked = concat(varintField(1, 50), varintField(1, 3), bytesField(9, new byte[600]));
    byte[] packed =
        concat(
            bytesField(1, concat(varint(70), varint(2))), // packed dims [70, 2]
            tagged(4, 5, new byte[4]), // float_data, fixed32
            tagged(10, 1, new byte[8])); // double_data, fixed64
    byte[] small = concat(varintField(1, 10), bytesField(9, new byte[40]));
    byte[] scalar = bytesField(9, new byte[4]);
    byte[] graph =
        concat(
            bytesField(1, new byte[7]), // a node
            bytesField(2, new byte[3]), // the graph's name
            bytesField(5, unpacked),
            bytesField(5, packed),
            bytesField(5, small),
            bytesField(5, scalar));
    byte[] model = concat(varintField(1, 8), bytesField(7, graph), bytesField(8, new byte[5]));
    // 600 raw bytes for [50, 3]; [70, 2] has no raw data: 4 * 140; the others are too small.
    assertEquals(600 + 560, OnnxSizes.catalogueTableBytes(ByteBuffer.wrap(model), 50));
    assertEquals(560, OnnxSizes.catalogueTableBytes(ByteBuffer.wrap(model), 51));
    assertEquals(0, OnnxSizes.catalogueTableBytes(ByteBuffer.wrap(model), 71));
    byte[] truncated = Arrays.copyOf(model, model.length - 3);
    assertThrows(
        IllegalArgumentException.class,
        () -> OnnxSizes.catalogueTableBytes(ByteBuffer.wrap(truncated), 50));
  }

  private static byte[] varint(long value) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    while ((value & ~0x7fL) != 0) {
      out.write((int) ((value & 0x7f) | 0x80));
      value >>>= 7;
    }
    out.write((int) value);
    return out.toByteArray();
  }

  private static byte[] tagged(int number, int wireType, byte[] payload) {
    return concat(varint(number << 3 | wireType), payload);
  }

  private static byte[] varintField(int number, long value) {
    return tagged(number, 0, varint(value));
  }

  private static byte[] bytesField(int number, byte[] payload) {
    return tagged(number, 2, concat(varint(payload.length), payload));
  }

  private static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] part : parts) {
      out.write(part, 0, part.length);
    }
    return out.toByteArray();
  }

  private static List<Object> keys(Map<String, Object> json) {
    return Arrays.asList(json.keySet().toArray());
  }

  @Test
  public void peakMemoryIsReadOnLinux() {
    Double peak = ProcessMemory.peakMegabytes();
    assertNotNull("this test runs on Linux, which has /proc/self/status", peak);
    assertTrue(peak > 1);
  }
}
