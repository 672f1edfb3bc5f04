package dev.pocketrec.core;

/**
 * Receives the time spent in each model call of a recommendation: the hook behind per-stage
 * latencies in benchmarks.
 *
 * <p>Stages are named as in {@code pocketrec-bench/1} records: {@code "encode"} and {@code
 * "decode_level_0"}, {@code "decode_level_1"}, ... A graph with a static batch may be called
 * several times per stage; each call is reported. Called on the thread that called {@link
 * Recommender#recommend}.
 */
@FunctionalInterface
public interface TimingListener {

  /** Name of the stage that decodes {@code level}. */
  static String decodeStage(int level) {
    return "decode_level_" + level;
  }

  /** One model call of {@code stage} took {@code nanos} nanoseconds. */
  void onStage(String stage, long nanos);
}
