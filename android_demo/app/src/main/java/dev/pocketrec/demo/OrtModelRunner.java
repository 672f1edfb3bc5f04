package dev.pocketrec.demo;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import dev.pocketrec.core.Bundle;
import dev.pocketrec.core.BundleException;
import dev.pocketrec.core.Manifest;
import dev.pocketrec.core.ModelRunner;
import dev.pocketrec.core.ProviderFallback;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The core's {@link ModelRunner} on ONNX Runtime for Android: the bundle's encoder and decoder
 * as two sessions on one execution provider.
 *
 * <p>Inputs are fed under the names the bundle's graphs declare ({@code history_codes}, {@code
 * history_rows}; {@code memory}, {@code memory_mask}, {@code prefix}, {@code level}), as the
 * Python SDK feeds them. When the manifest has a compiled version of a graph for the chosen
 * provider (a QNN context model), that file is loaded instead of the portable one. Sessions are
 * thread-safe, and so is this runner.
 */
final class OrtModelRunner implements ModelRunner, AutoCloseable {

  private final OrtEnvironment env;
  private final OrtSession.SessionOptions options;
  private final OrtSession encoder;
  private final OrtSession decoder;
  private final String provider;

  private OrtModelRunner(
      OrtEnvironment env,
      OrtSession.SessionOptions options,
      OrtSession encoder,
      OrtSession decoder,
      String provider) {
    this.env = env;
    this.options = options;
    this.encoder = encoder;
    this.decoder = decoder;
    this.provider = provider;
  }

  /**
   * Creates the two sessions on {@code provider}.
   *
   * @param provider one of {@link ProviderFallback#CPU}, {@link ProviderFallback#XNNPACK}, {@link
   *     ProviderFallback#QNN}.
   * @param threads intra-op threads (XNNPACK: its own pool's threads).
   * @throws OrtException if the provider cannot be added or cannot take the graphs (on QNN: any
   *     node the NPU cannot run, since CPU fallback is disabled there).
   */
  static OrtModelRunner open(OrtEnvironment env, Bundle bundle, String provider, int threads)
      throws OrtException {
    OrtSession.SessionOptions options = sessionOptions(bundle.manifest(), provider, threads);
    OrtSession encoder = null;
    try {
      encoder = env.createSession(bundle.encoderFile(provider).toString(), options);
      OrtSession decoder = env.createSession(bundle.decoderFile(provider).toString(), options);
      return new OrtModelRunner(env, options, encoder, decoder, provider);
    } catch (OrtException | RuntimeException e) {
      closeQuietly(encoder);
      options.close();
      throw e;
    }
  }

  /** Session options for one provider, as the Python SDK and ONNX Runtime's guides set them. */
  private static OrtSession.SessionOptions sessionOptions(
      Manifest manifest, String provider, int threads) throws OrtException {
    OrtSession.SessionOptions options = new OrtSession.SessionOptions();
    try {
      options.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
      options.setInterOpNumThreads(1);
      switch (provider) {
        case ProviderFallback.XNNPACK:
          // XNNPACK has its own thread pool: keep ONNX Runtime's at one thread, not spinning.
          options.setIntraOpNumThreads(1);
          options.addConfigEntry("session.intra_op.allow_spinning", "0");
          options.addXnnpack(
              Collections.singletonMap("intra_op_num_threads", Integer.toString(threads)));
          break;
        case ProviderFallback.QNN:
          // The whole graph must run on the NPU; a partial placement is a failure to fall back on.
          options.setIntraOpNumThreads(threads);
          options.addConfigEntry("session.disable_cpu_ep_fallback", "1");
          options.addQnn(qnnOptions(manifest));
          break;
        case ProviderFallback.CPU:
          options.setIntraOpNumThreads(threads);
          break;
        default:
          throw new IllegalArgumentException("unsupported execution provider " + provider);
      }
      return options;
    } catch (OrtException | RuntimeException e) {
      options.close();
      throw e;
    }
  }

  /** The HTP backend, with the bundle's own QNN options (backend, SoC, ...) on top. */
  static Map<String, String> qnnOptions(Manifest manifest) {
    Map<String, String> bundleOptions =
        manifest.providerOptions().getOrDefault(ProviderFallback.QNN, Collections.emptyMap());
    Map<String, String> qnn = new LinkedHashMap<>();
    if (!bundleOptions.containsKey("backend_path")) { // backend_type and backend_path exclude
      qnn.put("backend_type", "htp");
    }
    qnn.putAll(bundleOptions);
    return qnn;
  }

  /** The provider the sessions run on. */
  String provider() {
    return provider;
  }

  @Override
  public float[][][] encode(long[][][] historyCodes, long[][] historyRows) {
    Map<String, OnnxTensor> feeds = new HashMap<>();
    try {
      feeds.put("history_codes", OnnxTensor.createTensor(env, historyCodes));
      feeds.put("history_rows", OnnxTensor.createTensor(env, historyRows));
      try (OrtSession.Result out = encoder.run(feeds)) {
        return (float[][][]) first(out).getValue();
      }
    } catch (OrtException e) {
      throw new BundleException("the encoder failed on " + provider + ": " + e.getMessage(), e);
    } finally {
      closeAll(feeds);
    }
  }

  @Override
  public float[][][] decode(
      float[][][] memory, boolean[][] memoryMask, long[][][] prefix, long level) {
    Map<String, OnnxTensor> feeds = new HashMap<>();
    try {
      feeds.put("memory", floatTensor(memory));
      feeds.put("memory_mask", OnnxTensor.createTensor(env, memoryMask));
      feeds.put("prefix", OnnxTensor.createTensor(env, prefix));
      feeds.put("level", OnnxTensor.createTensor(env, level)); // a scalar int64
      try (OrtSession.Result out = decoder.run(feeds)) {
        return (float[][][]) first(out).getValue();
      }
    } catch (OrtException e) {
      throw new BundleException("the decoder failed on " + provider + ": " + e.getMessage(), e);
    } finally {
      closeAll(feeds);
    }
  }

  /**
   * (users, L, D) memory as one direct buffer: copying it into a buffer once is much cheaper
   * than ONNX Runtime reflecting over a 3-D Java array.
   */
  private OnnxTensor floatTensor(float[][][] memory) throws OrtException {
    int rows = memory.length;
    int steps = memory[0].length;
    int hidden = memory[0][0].length;
    FloatBuffer buffer =
        ByteBuffer.allocateDirect(rows * steps * hidden * Float.BYTES)
            .order(ByteOrder.nativeOrder())
            .asFloatBuffer();
    for (float[][] row : memory) {
      for (float[] step : row) {
        buffer.put(step);
      }
    }
    buffer.rewind();
    return OnnxTensor.createTensor(env, buffer, new long[] {rows, steps, hidden});
  }

  private static OnnxValue first(OrtSession.Result out) {
    return out.get(0);
  }

  private static void closeAll(Map<String, OnnxTensor> tensors) {
    for (OnnxTensor tensor : tensors.values()) {
      tensor.close();
    }
  }

  private static void closeQuietly(OrtSession session) {
    if (session == null) {
      return;
    }
    try {
      session.close();
    } catch (OrtException ignored) {
      // nothing more can be done about a session that fails to close while another error is
      // being reported
    }
  }

  /** Closes both sessions and their options. */
  @Override
  public void close() {
    closeQuietly(encoder);
    closeQuietly(decoder);
    options.close();
  }
}
