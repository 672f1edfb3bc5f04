// Plugin versions for every module; each module applies what it needs.
// AGP 8.7 needs Gradle 8.9+ (the wrapper pins 8.11.1) and a JDK 17+ to run Gradle.
plugins {
    id("com.android.application") version "8.7.3" apply false
}
