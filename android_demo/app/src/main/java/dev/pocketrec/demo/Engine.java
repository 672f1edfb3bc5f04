package dev.pocketrec.demo;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtProvider;
import android.content.Context;
import dev.pocketrec.core.Bundle;
import dev.pocketrec.core.ProviderFallback;
import dev.pocketrec.core.Recommender;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * The packaged bundle opened on an execution provider: the verified bundle, the ONNX Runtime
 * sessions and the core's {@link Recommender} on top of them.
 *
 * <p>The requested provider is tried first; if this ONNX Runtime package lacks it or it cannot
 * take the graphs, the next one of {@link ProviderFallback#chain} is used, and what was skipped is
 * kept for the screen.
 */
final class Engine implements AutoCloseable {

  /** The provider choices offered, most specialised first. */
  static final List<String> CHOICES =
      Collections.unmodifiableList(
          Arrays.asList(ProviderFallback.CPU, ProviderFallback.XNNPACK, ProviderFallback.QNN));

  final Bundle bundle;
  final Recommender recommender;
  final String requested;
  final String provider;
  final List<String> skipped;
  final String onnxruntimeVersion;
  final int threads;
  private final OrtModelRunner runner;

  private Engine(
      Bundle bundle,
      OrtModelRunner runner,
      String requested,
      List<String> skipped,
      String onnxruntimeVersion,
      int threads) {
    this.bundle = bundle;
    this.runner = runner;
    this.recommender = Recommender.fromBundle(bundle, runner);
    this.requested = requested;
    this.provider = runner.provider();
    this.skipped = Collections.unmodifiableList(new ArrayList<>(skipped));
    this.onnxruntimeVersion = onnxruntimeVersion;
    this.threads = threads;
  }

  /**
   * Opens the packaged bundle on {@code requested}, falling back when needed. Slow (file checks,
   * session creation): call it off the main thread.
   *
   * @throws dev.pocketrec.core.BundleException missing or altered bundle files.
   * @throws dev.pocketrec.core.IncompatibleRuntimeException ONNX Runtime older than the bundle
   *     needs.
   * @throws dev.pocketrec.core.ProviderUnavailableException no provider could open the graphs.
   */
  static Engine open(Context context, String requested, int threads) {
    Bundle bundle = BundleInstaller.open(context);
    OrtEnvironment env = OrtEnvironment.getEnvironment();
    String version = env.getVersion();
    bundle.manifest().checkRuntime(version);
    ProviderFallback.Opened<OrtModelRunner> opened =
        ProviderFallback.open(
            ProviderFallback.chain(requested),
            availableProviders(),
            provider -> OrtModelRunner.open(env, bundle, provider, threads));
    return new Engine(bundle, opened.value(), requested, opened.skipped(), version, threads);
  }

  /** The execution providers this ONNX Runtime package was built with, by ONNX Runtime name. */
  static Set<String> availableProviders() {
    Set<String> names = new TreeSet<>();
    for (OrtProvider provider : OrtEnvironment.getAvailableProviders()) {
      names.add(provider.getName());
    }
    return names;
  }

  /** The providers in use, most preferred first (non-CPU sessions keep the CPU for the rest). */
  List<String> providersInUse() {
    return provider.equals(ProviderFallback.CPU)
        ? Collections.singletonList(provider)
        : Arrays.asList(provider, ProviderFallback.CPU);
  }

  /** Short name of a provider for the screen and for benchmark records: cpu, xnnpack, qnn. */
  static String kind(String provider) {
    switch (provider) {
      case ProviderFallback.QNN:
        return "qnn";
      case ProviderFallback.XNNPACK:
        return "xnnpack";
      default:
        return "cpu";
    }
  }

  /** The number of items to recommend: the bundle's {@code search.top_k}, else 10. */
  int topK() {
    Long k = bundle.manifest().search().get("top_k");
    int items = bundle.catalog().size();
    return (int) Math.max(1, Math.min(items, k == null ? 10 : k));
  }

  @Override
  public void close() {
    runner.close();
  }
}
