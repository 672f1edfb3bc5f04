package dev.pocketrec.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** The peak resident memory of this process, as Linux (and so Android) reports it. */
public final class ProcessMemory {

  private static final Path STATUS = Paths.get("/proc/self/status");

  private ProcessMemory() {}

  /**
   * Peak resident set size in MiB ({@code VmHWM}, what {@code getrusage}'s {@code ru_maxrss}
   * reports), or null where {@code /proc/self/status} does not exist.
   */
  public static Double peakMegabytes() {
    try {
      for (String line : Files.readAllLines(STATUS, StandardCharsets.UTF_8)) {
        if (line.startsWith("VmHWM:")) {
          String kilobytes = line.substring("VmHWM:".length()).replace("kB", "").trim();
          return Long.parseLong(kilobytes) / 1024.0;
        }
      }
    } catch (IOException | NumberFormatException e) {
      return null;
    }
    return null;
  }
}
