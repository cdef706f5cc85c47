"""What the chapters read and show: profile inputs, charts, the chapter runner."""
