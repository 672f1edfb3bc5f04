package dev.pocketrec.demo;

import android.app.Activity;
import android.content.Intent;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.text.Editable;
import android.text.TextWatcher;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ListView;
import android.widget.Spinner;
import android.widget.TextView;
import dev.pocketrec.core.Catalog;
import dev.pocketrec.core.ProviderFallback;
import dev.pocketrec.core.Recommendation;
import dev.pocketrec.core.Recommender;
import dev.pocketrec.core.RecommenderException;
import dev.pocketrec.core.TimingListener;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The demo screen: the catalogue with titles; tapping an item (in the catalogue or among the
 * recommendations) appends it to the history, and the recommendations and their latency update
 * at once. The execution provider can be switched live; when the chosen one is unavailable the
 * engine falls back and says why.
 *
 * <p>All model work runs on one background thread, in order; results of requests overtaken by a
 * newer history are dropped.
 */
public final class MainActivity extends Activity {

  static final String EXTRA_PROVIDER = "dev.pocketrec.demo.PROVIDER";
  private static final String STATE_HISTORY = "history";
  private static final String STATE_PROVIDER = "provider";
  private static final int THREADS = 2;
  private static final int HISTORY_SHOWN = 6;

  private final ExecutorService worker = Executors.newSingleThreadExecutor();
  private final Handler mainThread = new Handler(Looper.getMainLooper());
  private final ArrayList<String> history = new ArrayList<>();

  private Engine engine; // used on the worker thread only
  private String requestedProvider; // main thread
  private int generation; // main thread: the newest recommendation request
  private Catalog shownCatalog; // main thread

  private Spinner providerChoice;
  private TextView status;
  private TextView latency;
  private TextView historyText;
  private Row.Adapter recommendations;
  private Row.Adapter catalogue;

  @Override
  protected void onCreate(Bundle saved) {
    super.onCreate(saved);
    setContentView(R.layout.activity_main);
    providerChoice = findViewById(R.id.provider);
    status = findViewById(R.id.status);
    latency = findViewById(R.id.latency);
    historyText = findViewById(R.id.history);
    recommendations = new Row.Adapter(this);
    catalogue = new Row.Adapter(this);
    ListView recommendationList = findViewById(R.id.recommendations);
    ListView catalogueList = findViewById(R.id.catalogue);
    recommendationList.setAdapter(recommendations);
    catalogueList.setAdapter(catalogue);
    recommendationList.setOnItemClickListener(
        (parent, view, position, id) -> addToHistory(recommendations.getItem(position)));
    catalogueList.setOnItemClickListener(
        (parent, view, position, id) -> addToHistory(catalogue.getItem(position)));

    Button clear = findViewById(R.id.clear);
    clear.setOnClickListener(
        v -> {
          history.clear();
          requestRecommendations();
        });
    Button benchmark = findViewById(R.id.benchmark);
    benchmark.setOnClickListener(
        v ->
            startActivity(
                new Intent(this, BenchmarkActivity.class)
                    .putExtra(EXTRA_PROVIDER, selectedProvider())));
    EditText filter = findViewById(R.id.filter);
    filter.addTextChangedListener(
        new TextWatcher() {
          @Override
          public void beforeTextChanged(CharSequence s, int start, int count, int after) {}

          @Override
          public void onTextChanged(CharSequence s, int start, int before, int count) {
            catalogue.getFilter().filter(s);
          }

          @Override
          public void afterTextChanged(Editable s) {}
        });

    if (saved != null) {
      ArrayList<String> restored = saved.getStringArrayList(STATE_HISTORY);
      if (restored != null) {
        history.addAll(restored);
      }
    }
    setUpProviderChoice(providerChoice, saved == null ? null : saved.getString(STATE_PROVIDER));
    providerChoice.setOnItemSelectedListener(
        new AdapterView.OnItemSelectedListener() {
          @Override
          public void onItemSelected(AdapterView<?> parent, View view, int position, long id) {
            openEngine(Engine.CHOICES.get(position));
          }

          @Override
          public void onNothingSelected(AdapterView<?> parent) {}
        });
  }

  /** Fills a provider spinner and selects {@code provider} (default: CPU). */
  static void setUpProviderChoice(Spinner spinner, String provider) {
    ArrayAdapter<CharSequence> labels =
        ArrayAdapter.createFromResource(
            spinner.getContext(), R.array.providers, android.R.layout.simple_spinner_item);
    labels.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
    spinner.setAdapter(labels);
    int position = provider == null ? 0 : Engine.CHOICES.indexOf(provider);
    spinner.setSelection(Math.max(0, position));
  }

  private String selectedProvider() {
    return Engine.CHOICES.get(providerChoice.getSelectedItemPosition());
  }

  @Override
  protected void onSaveInstanceState(Bundle out) {
    super.onSaveInstanceState(out);
    out.putStringArrayList(STATE_HISTORY, history);
    out.putString(STATE_PROVIDER, selectedProvider());
  }

  @Override
  protected void onDestroy() {
    super.onDestroy();
    worker.execute(
        () -> {
          if (engine != null) {
            engine.close();
            engine = null;
          }
        });
    worker.shutdown();
  }

  /** Opens the bundle on {@code provider} (in the background), then recommends again. */
  private void openEngine(String provider) {
    if (provider.equals(requestedProvider)) {
      return;
    }
    requestedProvider = provider;
    status.setText(getString(R.string.opening, Engine.kind(provider)));
    worker.execute(
        () -> {
          try {
            Engine next = Engine.open(getApplicationContext(), provider, THREADS);
            Engine previous = engine;
            engine = next;
            if (previous != null) {
              previous.close();
            }
            mainThread.post(() -> showEngine(next));
          } catch (RuntimeException e) {
            mainThread.post(
                () -> {
                  status.setText(describe(e));
                  requestedProvider = null; // choosing a provider again retries
                });
          }
        });
  }

  private void showEngine(Engine opened) {
    StringBuilder text = new StringBuilder();
    text.append(opened.bundle.manifest().name())
        .append(" (")
        .append(opened.bundle.manifest().precision())
        .append(", ")
        .append(opened.bundle.catalog().size())
        .append(" items) on ")
        .append(Engine.kind(opened.provider))
        .append(", ")
        .append(opened.threads)
        .append(" threads, ONNX Runtime ")
        .append(opened.onnxruntimeVersion);
    for (String reason : opened.skipped) {
      text.append("\nfell back: ").append(reason);
    }
    if (!BuildConfig.QNN_PACKAGE && opened.requested.equals(ProviderFallback.QNN)) {
      text.append(" (QNN needs the app built with -PpocketrecQnn=true)");
    }
    status.setText(text);
    if (shownCatalog != opened.bundle.catalog()) {
      shownCatalog = opened.bundle.catalog();
      catalogue.clear();
      for (int row = 0; row < shownCatalog.size(); row++) {
        String id = shownCatalog.itemId(row);
        catalogue.add(new Row(id, shownCatalog.title(row), describe(shownCatalog, row)));
      }
    }
    requestRecommendations();
  }

  private void addToHistory(Row row) {
    if (row != null) {
      history.add(row.itemId);
      requestRecommendations();
    }
  }

  /** Recommends for the current history on the worker thread and shows the result. */
  private void requestRecommendations() {
    showHistory();
    int request = ++generation;
    List<String> snapshot = new ArrayList<>(history);
    worker.execute(
        () -> {
          Engine current = engine;
          if (current == null) {
            return; // the engine is still opening; it recommends when it is ready
          }
          long[] modelNanos = new long[1];
          TimingListener timing = (stage, nanos) -> modelNanos[0] += nanos;
          Recommender timed = current.recommender.withTimingListener(timing);
          try {
            long start = System.nanoTime();
            List<Recommendation> found = timed.recommend(snapshot, current.topK());
            double totalMs = (System.nanoTime() - start) / 1e6;
            double modelMs = modelNanos[0] / 1e6;
            mainThread.post(
                () -> {
                  if (request == generation) {
                    showRecommendations(found, totalMs, modelMs, current, snapshot.isEmpty());
                  }
                });
          } catch (RecommenderException e) {
            mainThread.post(() -> latency.setText(describe(e)));
          }
        });
  }

  private void showRecommendations(
      List<Recommendation> found, double totalMs, double modelMs, Engine used, boolean cold) {
    recommendations.clear();
    for (Recommendation r : found) {
      Object title = r.metadata().get("title");
      String detail = String.format(Locale.US, "%s · log p = %.3f", r.itemId(), r.logProb());
      String shown = title == null ? r.itemId() : title.toString();
      recommendations.add(new Row(r.itemId(), shown, detail));
    }
    if (cold) {
      latency.setText(
          String.format(
              Locale.US,
              "recommend(k=%d): %.2f ms (empty history: by popularity, no model call)",
              found.size(),
              totalMs));
    } else {
      latency.setText(
          String.format(
              Locale.US,
              "recommend(k=%d): %.2f ms on %s (model %.2f ms, search %.2f ms)",
              found.size(),
              totalMs,
              Engine.kind(used.provider),
              modelMs,
              totalMs - modelMs));
    }
  }

  private void showHistory() {
    if (history.isEmpty() || shownCatalog == null) {
      historyText.setText(R.string.history_empty);
      return;
    }
    StringBuilder titles = new StringBuilder();
    int from = Math.max(0, history.size() - HISTORY_SHOWN);
    if (from > 0) {
      titles.append("… → ");
    }
    for (int i = from; i < history.size(); i++) {
      int row = shownCatalog.rowOf(history.get(i));
      titles.append(row < 0 ? history.get(i) : shownCatalog.title(row));
      if (i < history.size() - 1) {
        titles.append(" → ");
      }
    }
    historyText.setText(getString(R.string.history, history.size(), titles));
  }

  /** The catalogue line under a title: the item id and a few display fields. */
  private static String describe(Catalog catalog, int row) {
    StringBuilder detail = new StringBuilder(catalog.itemId(row));
    Map<String, Object> metadata = catalog.metadata(row);
    for (String key : new String[] {"brand", "price"}) {
      Object value = metadata.get(key);
      if (value != null) {
        detail.append(" · ").append(value);
      }
    }
    return detail.toString();
  }

  static String describe(Throwable e) {
    return e.getClass().getSimpleName() + ": " + e.getMessage();
  }
}
