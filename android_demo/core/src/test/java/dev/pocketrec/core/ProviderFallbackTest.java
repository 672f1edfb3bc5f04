package dev.pocketrec.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import org.junit.Test;

/** Execution-provider choice with automatic fallback, as the app uses it. */
public class ProviderFallbackTest {

  private static final List<String> ALL =
      Arrays.asList(ProviderFallback.QNN, ProviderFallback.XNNPACK, ProviderFallback.CPU);

  @Test
  public void chainsEndOnTheCpu() {
    assertEquals(ALL, ProviderFallback.chain(ProviderFallback.QNN));
    assertEquals(
        Arrays.asList(ProviderFallback.XNNPACK, ProviderFallback.CPU),
        ProviderFallback.chain(ProviderFallback.XNNPACK));
    assertEquals(
        Collections.singletonList(ProviderFallback.CPU),
        ProviderFallback.chain(ProviderFallback.CPU));
    assertThrows(
        ProviderUnavailableException.class, () -> ProviderFallback.chain("CUDAExecutionProvider"));
  }

  @Test
  public void thePreferredProviderIsUsedWhenItWorks() {
    ProviderFallback.Opened<String> opened =
        ProviderFallback.open(ALL, ALL, provider -> "session on " + provider);
    assertEquals(ProviderFallback.QNN, opened.provider());
    assertEquals("session on " + ProviderFallback.QNN, opened.value());
    assertFalse(opened.fellBack());
  }

  @Test
  public void missingAndFailingProvidersFallBackWithTheirReasons() {
    List<String> tried = new ArrayList<>();
    ProviderFallback.Opened<String> opened =
        ProviderFallback.open(
            ALL,
            Arrays.asList(ProviderFallback.XNNPACK, ProviderFallback.CPU),
            provider -> {
              tried.add(provider);
              if (provider.equals(ProviderFallback.XNNPACK)) {
                throw new IllegalStateException("unsupported op");
              }
              return provider;
            });
    assertEquals(ProviderFallback.CPU, opened.provider());
    assertEquals(Arrays.asList(ProviderFallback.XNNPACK, ProviderFallback.CPU), tried);
    assertTrue(opened.fellBack());
    assertEquals(
        Arrays.asList(
            "QNNExecutionProvider: not in this ONNX Runtime package",
            "XnnpackExecutionProvider: unsupported op"),
        opened.skipped());
  }

  @Test
  public void aBrokenBundleIsNotRetriedAndNothingWorkingIsExplained() {
    BundleException broken =
        assertThrows(
            BundleException.class,
            () ->
                ProviderFallback.open(
                    ALL,
                    ALL,
                    provider -> {
                      throw new BundleException("bundle file decoder.onnx is missing");
                    }));
    assertEquals("bundle file decoder.onnx is missing", broken.getMessage());
    ProviderUnavailableException none =
        assertThrows(
            ProviderUnavailableException.class,
            () ->
                ProviderFallback.open(
                    ALL,
                    Collections.singletonList(ProviderFallback.CPU),
                    provider -> {
                      throw new java.io.IOException("cannot map the graph");
                    }));
    assertTrue(
        none.getMessage(),
        none.getMessage().endsWith("CPUExecutionProvider: cannot map the graph"));
  }
}
