package dev.pocketrec.demo;

import android.os.Build;

/** What a benchmark record says about the phone ({@code device} in pocketrec-bench/1). */
final class DeviceInfo {

  private DeviceInfo() {}

  /** The SoC (Android 12+), else the hardware name: the record's {@code cpu_model}. */
  static String cpuModel() {
    if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
      return Build.SOC_MANUFACTURER + " " + Build.SOC_MODEL;
    }
    return Build.HARDWARE;
  }

  /** The primary ABI, such as arm64-v8a: the record's {@code machine}. */
  static String machine() {
    return Build.SUPPORTED_ABIS.length > 0 ? Build.SUPPORTED_ABIS[0] : "unknown";
  }

  /** Processors available to the app: the record's {@code cores}. */
  static int cores() {
    return Runtime.getRuntime().availableProcessors();
  }

  /** Such as "Android 15 (API 35)": the record's {@code os}. */
  static String os() {
    return "Android " + Build.VERSION.RELEASE + " (API " + Build.VERSION.SDK_INT + ")";
  }

  /** Manufacturer and model, such as "Google Pixel 8": an extra {@code device.model}. */
  static String model() {
    return Build.MANUFACTURER + " " + Build.MODEL;
  }
}
