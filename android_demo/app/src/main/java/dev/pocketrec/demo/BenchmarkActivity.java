package dev.pocketrec.demo;

import android.app.Activity;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.widget.Button;
import android.widget.EditText;
import android.widget.Spinner;
import android.widget.TextView;
import dev.pocketrec.core.BenchRecord;
import dev.pocketrec.core.Benchmark;
import dev.pocketrec.core.Percentiles;
import dev.pocketrec.core.ProcessMemory;
import java.io.File;
import java.io.IOException;
import java.nio.file.Path;
import java.text.SimpleDateFormat;
import java.time.Instant;
import java.util.Date;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Measures the packaged bundle as {@code pocketrec bench} does and writes a {@code
 * pocketrec-bench/1} record to the app's external files ({@code
 * Android/data/dev.pocketrec.demo/files/bench/}), from where {@code adb pull} fetches it.
 *
 * <p>The settings default to {@code pocketrec bench}'s. The record's {@code config.device} is the
 * provider asked for and {@code device.kind} the one that ran, which differ after a fallback.
 */
public final class BenchmarkActivity extends Activity {

  private final ExecutorService worker = Executors.newSingleThreadExecutor();
  private final Handler mainThread = new Handler(Looper.getMainLooper());

  private Spinner providerChoice;
  private EditText threads;
  private EditText k;
  private EditText warmup;
  private EditText repetitions;
  private EditText batch;
  private Button run;
  private TextView summary;
  private TextView record;

  @Override
  protected void onCreate(Bundle saved) {
    super.onCreate(saved);
    setContentView(R.layout.activity_benchmark);
    providerChoice = findViewById(R.id.provider);
    threads = findViewById(R.id.threads);
    k = findViewById(R.id.k);
    warmup = findViewById(R.id.warmup);
    repetitions = findViewById(R.id.repetitions);
    batch = findViewById(R.id.batch);
    run = findViewById(R.id.run);
    summary = findViewById(R.id.summary);
    record = findViewById(R.id.record);
    MainActivity.setUpProviderChoice(
        providerChoice, getIntent().getStringExtra(MainActivity.EXTRA_PROVIDER));
    run.setOnClickListener(v -> start());
  }

  @Override
  protected void onDestroy() {
    super.onDestroy();
    worker.shutdownNow();
  }

  private void start() {
    String requested = Engine.CHOICES.get(providerChoice.getSelectedItemPosition());
    int[] values = new int[5]; // threads, k, warmup, repetitions, batch
    EditText[] fields = {threads, k, warmup, repetitions, batch};
    try {
      for (int i = 0; i < fields.length; i++) {
        values[i] = Integer.parseInt(fields[i].getText().toString().trim());
      }
    } catch (NumberFormatException e) {
      summary.setText("every setting must be a whole number (" + e.getMessage() + ")");
      return;
    }
    run.setEnabled(false);
    record.setText("");
    summary.setText(getString(R.string.running, Engine.kind(requested), values[2], values[3]));
    worker.execute(() -> measure(requested, values));
  }

  /** Runs on the worker thread: open, measure, write, then show. */
  private void measure(String requested, int[] values) {
    String text;
    String json = "";
    int threadCount = values[0];
    try (Engine engine = Engine.open(getApplicationContext(), requested, threadCount)) {
      Benchmark.Config config =
          Benchmark.Config.builder(engine.bundle.folder().toString())
              .device(Engine.kind(requested))
              .threads(threadCount)
              .k(values[1])
              .warmup(values[2])
              .repetitions(values[3])
              .batch(values[4])
              .build();
      Benchmark.Result result = Benchmark.run(engine.recommender, config);
      BenchRecord bench =
          BenchRecord.builder()
              .bundle(engine.bundle)
              .device(
                  Engine.kind(engine.provider),
                  DeviceInfo.cpuModel(),
                  DeviceInfo.machine(),
                  DeviceInfo.cores(),
                  DeviceInfo.os())
              .deviceDetail("model", DeviceInfo.model())
              .runtime(engine.onnxruntimeVersion, engine.providersInUse(), threadCount)
              .result(result)
              .peakMemoryMb(ProcessMemory.peakMegabytes())
              .command(
                  "pocketrec Android demo " + BuildConfig.VERSION_NAME + " ("
                      + BuildConfig.ONNXRUNTIME_PACKAGE + "): benchmark screen")
              .created(Instant.now())
              .build();
      Path file = outputFile(engine);
      bench.write(file);
      json = bench.toJsonString();
      text = summarize(engine, result, file);
    } catch (RuntimeException | IOException e) { // bad settings, bundle or provider errors
      text = MainActivity.describe(e);
    }
    String shownText = text;
    String shownJson = json;
    mainThread.post(
        () -> {
          summary.setText(shownText);
          record.setText(shownJson);
          run.setEnabled(true);
        });
  }

  private Path outputFile(Engine engine) throws IOException {
    File base = getExternalFilesDir("bench");
    if (base == null) { // shared storage unavailable: keep it private
      base = new File(getFilesDir(), "bench");
    }
    if (!base.isDirectory() && !base.mkdirs()) {
      throw new IOException("cannot create " + base);
    }
    String stamp = new SimpleDateFormat("yyyyMMdd-HHmmss", Locale.US).format(new Date());
    String name =
        "bench-" + engine.bundle.manifest().name() + "-" + Engine.kind(engine.provider) + "-"
            + stamp + ".json";
    return new File(base, name).toPath();
  }

  private static String summarize(Engine engine, Benchmark.Result result, Path file) {
    Percentiles e2e = result.endToEnd();
    StringBuilder text = new StringBuilder();
    text.append(
        String.format(
            Locale.US,
            "%s on %s: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms; %.0f requests/s; "
                + "%.0f%% of the time in ONNX Runtime",
            engine.bundle.manifest().name(),
            Engine.kind(engine.provider),
            e2e.p50(),
            e2e.p90(),
            e2e.p99(),
            result.throughputPerSecond(),
            100 * result.modelTimeShare()));
    for (String reason : engine.skipped) {
      text.append("\nfell back: ").append(reason);
    }
    text.append("\nwritten to ").append(file);
    return text.toString();
  }
}
