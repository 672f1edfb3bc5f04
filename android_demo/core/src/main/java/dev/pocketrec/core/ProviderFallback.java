package dev.pocketrec.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.List;

/**
 * Opens a model on the preferred execution provider, falling back along a fixed chain when the
 * runtime lacks a provider or the provider cannot take the graphs.
 *
 * <p>The chain runs from the most to the least specialised provider an app offers: QNN (the
 * Qualcomm NPU) falls back to XNNPACK, XNNPACK to the CPU. The CPU provider is the end of every
 * chain. What was skipped, and why, is kept so that an app can show it next to its latency.
 */
public final class ProviderFallback {

  /** ONNX Runtime's default provider, present in every build. */
  public static final String CPU = "CPUExecutionProvider";

  /** The XNNPACK provider (optimised CPU kernels, in the standard Android package). */
  public static final String XNNPACK = "XnnpackExecutionProvider";

  /** Qualcomm's QNN provider (the Hexagon NPU, in the QNN Android package). */
  public static final String QNN = "QNNExecutionProvider";

  /** Opens the model on one provider. */
  @FunctionalInterface
  public interface Opener<T> {
    /**
     * Opens on {@code provider}.
     *
     * @throws Exception when the provider cannot take the model; the next one is tried.
     */
    T open(String provider) throws Exception;
  }

  /** What was opened, on which provider, and what was skipped on the way. */
  public static final class Opened<T> {
    private final T value;
    private final String provider;
    private final List<String> skipped;

    Opened(T value, String provider, List<String> skipped) {
      this.value = value;
      this.provider = provider;
      this.skipped = Collections.unmodifiableList(new ArrayList<>(skipped));
    }

    public T value() {
      return value;
    }

    /** The provider the value was opened on. */
    public String provider() {
      return provider;
    }

    /** One line per provider tried before {@link #provider}: "name: reason". */
    public List<String> skipped() {
      return skipped;
    }

    /** Whether the first provider of the chain was not the one used. */
    public boolean fellBack() {
      return !skipped.isEmpty();
    }
  }

  private ProviderFallback() {}

  /**
   * The providers to try for {@code requested}, most preferred first.
   *
   * @throws ProviderUnavailableException for a provider this chain does not know.
   */
  public static List<String> chain(String requested) {
    switch (requested) {
      case QNN:
        return Arrays.asList(QNN, XNNPACK, CPU);
      case XNNPACK:
        return Arrays.asList(XNNPACK, CPU);
      case CPU:
        return Collections.singletonList(CPU);
      default:
        throw new ProviderUnavailableException(
            "execution provider " + requested + " is not supported here; choose one of " + QNN
                + ", " + XNNPACK + ", " + CPU);
    }
  }

  /**
   * Opens on the first provider of {@code chain} that the runtime has and that accepts the
   * model.
   *
   * @param chain providers in order of preference (see {@link #chain}).
   * @param available the providers the runtime package was built with.
   * @param opener opens the model on one provider.
   * @throws ProviderUnavailableException if no provider could open it; the message gives every
   *     provider's reason.
   * @throws RecommenderException if the opener throws one on purpose (a broken bundle fails on
   *     every provider, so it is not retried).
   */
  public static <T> Opened<T> open(
      List<String> chain, Collection<String> available, Opener<T> opener) {
    List<String> skipped = new ArrayList<>();
    for (String provider : chain) {
      if (!available.contains(provider)) {
        skipped.add(provider + ": not in this ONNX Runtime package");
        continue;
      }
      try {
        return new Opened<>(opener.open(provider), provider, skipped);
      } catch (RecommenderException e) {
        throw e;
      } catch (Exception e) { // ONNX Runtime reports a provider that cannot run a graph this way
        skipped.add(provider + ": " + e.getMessage());
      }
    }
    throw new ProviderUnavailableException(
        "no execution provider could open the bundle: " + String.join("; ", skipped));
  }
}
