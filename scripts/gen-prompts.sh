#!/usr/bin/env bash
# Generates the IVR prompts listed in prompts/catalog.tsv as 8 kHz mono 16-bit PCM WAV files,
# prompts/<lang>/<name>.wav, with espeak-ng (speech) and sox (format, level, lead-in/trailing silence).
#
# Catalog format: one prompt per line, `lang<TAB>name<TAB>text`; blank lines and lines starting with # are
# ignored. Names are lowercase letters, digits and dashes. Languages without an espeak-ng voice (tl) are
# skipped with a notice; an unknown language code is an error so that typos do not go unnoticed.
#
# Idempotent: each file is rendered to a temporary file and only replaces the existing one when the audio
# differs (sox runs without dither, so the same text renders to the same bytes).
#
# It also renders the language-neutral tones (prompts/tones/, see the end of this script) with sox.
#
# Usage: scripts/gen-prompts.sh [catalog]   (default: prompts/catalog.tsv next to this script's repo)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
catalog="${1:-$root/prompts/catalog.tsv}"
out_dir="$(dirname "$catalog")"

command -v espeak-ng >/dev/null || { echo "gen-prompts: espeak-ng not found" >&2; exit 1; }
command -v sox >/dev/null || { echo "gen-prompts: sox not found" >&2; exit 1; }

# Our language code -> espeak-ng voice. Empty means: no usable voice, skip.
voice_for() {
    case "$1" in
        en) echo en-us ;;
        zh) echo cmn ;;
        es) echo es ;;
        pt) echo pt-br ;;
        vi) echo vi ;;
        th) echo th ;;
        id) echo id ;;
        ms) echo ms ;;
        hi) echo hi ;;
        de) echo de ;;
        fr) echo fr-fr ;;
        it) echo it ;;
        tl) echo "" ;;
        *) return 1 ;;
    esac
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

made=0 unchanged=0 skipped=0 line_no=0
declare -A skipped_langs=()
while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
    IFS=$'\t' read -r lang name text <<<"$line"
    if [[ -z "${lang:-}" || -z "${name:-}" || -z "${text:-}" ]]; then
        echo "gen-prompts: $catalog:$line_no: expected lang<TAB>name<TAB>text" >&2
        exit 1
    fi
    if [[ ! "$lang" =~ ^[a-z]{2,3}$ || ! "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
        echo "gen-prompts: $catalog:$line_no: bad language '$lang' or name '$name'" >&2
        exit 1
    fi
    if ! voice="$(voice_for "$lang")"; then
        echo "gen-prompts: $catalog:$line_no: unknown language '$lang' (add it to voice_for)" >&2
        exit 1
    fi
    if [[ -z "$voice" ]]; then
        if [[ -z "${skipped_langs[$lang]:-}" ]]; then
            echo "gen-prompts: notice: no espeak-ng voice for '$lang'; skipping its prompts (record them by hand)"
            skipped_langs[$lang]=1
        fi
        skipped=$((skipped + 1))
        continue
    fi
    mkdir -p "$out_dir/$lang"
    target="$out_dir/$lang/$name.wav"
    printf '%s' "$text" | espeak-ng -v "$voice" -s 150 --stdin -w "$tmp/raw.wav"
    # 8 kHz mono 16-bit; normalise to -3 dBFS; 100 ms lead-in and 200 ms trailing silence.
    sox -D -R "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$tmp/out.wav" norm -3 pad 0.1 0.2
    if [[ -f "$target" ]] && cmp -s "$tmp/out.wav" "$target"; then
        unchanged=$((unchanged + 1))
    else
        mv "$tmp/out.wav" "$target"
        made=$((made + 1))
    fi
done <"$catalog"

# Language-neutral tones, prompts/tones/ (not in the catalog: they are not speech).
# ringback: what a routed caller hears, looped, while an agent's phone rings — 440 Hz + 480 Hz (each
# about -16 dBFS, near the -19 dBm0 of the standard cadence), 2 s on with 20 ms ramps, 4 s off.
mkdir -p "$out_dir/tones"
target="$out_dir/tones/ringback.wav"
sox -D -r 8000 -c 2 -n -r 8000 -c 1 -b 16 -e signed-integer "$tmp/out.wav" \
    synth 2 sine 440 sine 480 remix - gain -n -10 fade 0.02 2 0.02 pad 0 4
if [[ -f "$target" ]] && cmp -s "$tmp/out.wav" "$target"; then
    unchanged=$((unchanged + 1))
else
    mv "$tmp/out.wav" "$target"
    made=$((made + 1))
fi

# hold-music: what a queued caller hears while waiting (the shipped [queue_defaults] music). A slow
# I-vi-IV-V progression (C, Am, F, G), 5 s a chord, 20 s looped; each chord is four pure sines in the
# telephone band (a handset barely plays below 300 Hz) with a soft 1.2 s swell in, a 1.5 s fade out and
# a gentle tremolo, so the loop joins without a click. Every note is pure (no harmonics) and at most
# 523 Hz, well below the lowest DTMF row (697 Hz): the in-band detector hears no key in it (checked by
# tests/inband_dtmf.rs over every shipped prompt). Synthesised here: royalty-free by construction.
chord() { # name f1 f2 f3 f4
    sox -D -r 8000 -c 4 -n -r 8000 -c 1 -b 16 -e signed-integer "$tmp/chord-$1.wav" \
        synth 5 sine "$2" sine "$3" sine "$4" sine "$5" remix - \
        tremolo 0.5 12 gain -n -10 fade q 1.2 5 1.5
}
chord 1 261.63 329.63 392.00 523.25 # C: C4 E4 G4 C5
chord 2 220.00 261.63 329.63 440.00 # Am: A3 C4 E4 A4
chord 3 261.63 349.23 440.00 523.25 # F: C4 F4 A4 C5
chord 4 246.94 293.66 392.00 493.88 # G: B3 D4 G4 B4
target="$out_dir/tones/hold-music.wav"
sox -D "$tmp/chord-1.wav" "$tmp/chord-2.wav" "$tmp/chord-3.wav" "$tmp/chord-4.wav" "$tmp/out.wav"
if [[ -f "$target" ]] && cmp -s "$tmp/out.wav" "$target"; then
    unchanged=$((unchanged + 1))
else
    mv "$tmp/out.wav" "$target"
    made=$((made + 1))
fi

echo "gen-prompts: $made written, $unchanged unchanged, $skipped skipped"
